"""The package installed outside the checkout: its wheel, unpacked into a fresh prefix as pip
installs it, finds the config files and the model that setup.py's data_files ship."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ('setup.py', 'setup.cfg', 'pyproject.toml', 'package.xml', 'LICENSE', 'README.md',
           'resource', 'mmp_ros', 'training', 'config', 'launch', 'models')

# What the installed package reads from its data folders, by the names its code uses.
PROBE = """
import json, sys
from mmp_ros import demo
from mmp_ros.evaluation import cli
from mmp_ros.share import share_folders
from training import adapt_bag
print(json.dumps({
    'package': demo.__file__,
    'files': [str(p) for p in (*demo.NODE_PARAMS, *demo.SCHEDULES.values(),
                                cli.DEFAULT_PARAMS[0], adapt_bag.DEFAULT_CONFIG,
                                adapt_bag.DEFAULT_PARAMS)],
    'models': [str(m) for f in share_folders('models') for m in sorted(f.glob('*.onnx'))],
}))
"""


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> Path:
    """A venv holding only the built wheel; the other packages come from this one's."""
    # pip wheel --no-build-isolation builds with this Python's own pip and pyproject's build
    # requirements; wheel is part of setuptools from 70.1 (Debian's python3-pip brings it).
    setuptools = tuple(map(int, importlib.metadata.version('setuptools').split('.')[:2]))
    if importlib.util.find_spec('pip') is None or (
            importlib.util.find_spec('wheel') is None and setuptools < (70, 1)):
        pytest.skip('building the wheel needs pip and wheel: apt-get install python3-pip')
    tmp = tmp_path_factory.mktemp('install')
    source = tmp / 'source'  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.egg-info'))
        else:
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                    '--no-build-isolation', '-w', str(tmp), str(source)],
                   check=True, capture_output=True)
    (wheel,) = tmp.glob('mmp_ros-*.whl')
    prefix = tmp / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(prefix)], check=True)
    paths = sysconfig.get_paths(vars={'base': str(prefix), 'platbase': str(prefix)})
    purelib = Path(paths['purelib'])
    with zipfile.ZipFile(wheel) as archive:  # what pip does with a pure-Python wheel
        for name in archive.namelist():
            first, _, rest = name.partition('/')
            if first.endswith('.data'):
                kind, _, rest = rest.partition('/')
                target = Path(paths[kind]) / rest
            else:
                target = purelib / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    here = sysconfig.get_paths()['purelib']
    (purelib / 'zz_dependencies.pth').write_text(f'import site; site.addsitedir({here!r})\n')
    return prefix


def _probe(prefix: Path, cwd: Path, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH')}
    done = subprocess.run([str(prefix / 'bin' / 'python'), '-c', PROBE], cwd=cwd,
                          env={**environment, **env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize('ament', [False, True], ids=['pip', 'ament_prefix_path'])
def test_the_installed_package_reads_its_config_and_model_from_share(installed, tmp_path,
                                                                     ament):
    env = {'AMENT_PREFIX_PATH': str(installed)} if ament else {}
    found = _probe(installed, tmp_path, **env)
    assert Path(found['package']).is_relative_to(installed)  # not the checkout's code
    share = installed / 'share' / 'mmp_ros'
    for path in map(Path, found['files']):
        assert path.is_file() and path.is_relative_to(share / 'config'), path
    assert [Path(m) for m in found['models']] == [share / 'models' / 'tiny_mmp.onnx']
