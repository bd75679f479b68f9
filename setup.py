"""ament_python packaging for mmp_ros (also a plain pip package)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'mmp_ros'
HERE = Path(__file__).resolve().parent


def share(folder, pattern='*'):
    """(install dir, files) for one data folder, if it holds anything."""
    files = sorted(p for p in glob(f'{folder}/{pattern}') if Path(p).is_file())
    return (f'share/{PACKAGE}/{folder}', files)


# Pinned exactly where a range would pull something else (torch: a CUDA build).
ROS_WHEELS = [  # ROS 2 Kilted as PyPI wheels; a native ROS install skips this extra.
    'ros-rclpy==9.1.2',
    'ros-rmw-fastrtps-cpp==9.3.3',
    'ros-sensor-msgs==5.5.1',
    'ros-std-msgs==5.5.1',
    'ros-diagnostic-msgs==5.5.1',
    'ros-visualization-msgs==5.5.1',
    'ros-builtin-interfaces==2.3.0',
]
TRAIN = [
    'torch==2.13.0',
    'einops>=0.8',
    'onnx>=1.17',
    'onnxscript>=0.5',
    'tqdm>=4.66',
]
TEST = ['pytest>=8', 'pytest-timeout>=2.3', 'ruff>=0.6', 'rosbags-image>=0.10', 'polanalyser>=3.0']

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*', 'training', 'training.*']),
    package_data={PACKAGE: ['resources/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        share('launch', '*.launch.py'),
        share('config'),
        share('models'),
    ],
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.24',
        'opencv-python-headless>=4.8',
        'pyyaml>=6',
        'onnxruntime>=1.18',
        'rosbags>=0.10',
        'mcap>=1.1',
        'zstandard>=0.19',  # mcap's own; mmp_ros.bags reads message-compressed files
        'matplotlib>=3.8',  # the plots of every run report (mmp_ros evaluate, demo)
    ],
    extras_require={
        'ros': ROS_WHEELS,
        'train': TRAIN,
        'tensorrt': ['tensorrt>=10,<12', 'cuda-python>=12'],
        'test': TEST,
    },
    zip_safe=True,
    maintainer='mmp_ros maintainers',
    maintainer_email='maintainers@mmp-ros.invalid',
    description='Multimodal segmentation robust to sensor failures (Masked Modality Projection).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            f'{PACKAGE} = {PACKAGE}.cli:main',
            f'mmp_segmentation_node = {PACKAGE}.cli:segmentation_node',
            f'mmp_segmentation_managed_node = {PACKAGE}.cli:segmentation_managed_node',
            f'mmp_dropout_node = {PACKAGE}.cli:dropout_node',
        ],
    },
)
