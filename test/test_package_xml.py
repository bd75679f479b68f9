"""package.xml follows REP 149 (format 3) and agrees with setup.py.

The official schema (package_format3.xsd) is published only on the ROS download server, which
this project's machines cannot reach, and no package on the registries we use ships a copy, so
the format-3 rules are checked structurally here (REP 149, REP 144 for names), plus
validation with xmllint against test/schema/package_format3_rep149.xsd (.ci/run installs xmllint).
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import importlib.util
import os
import re
import runpy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest import mock

import pytest
import setuptools

REPO = Path(__file__).resolve().parents[1]
PACKAGE_XML = REPO / 'package.xml'

# REP 149, format 3: the elements a <package> may hold, and how often.
REQUIRED_ONCE = ('name', 'version', 'description')
REQUIRED_ONE_OR_MORE = ('maintainer', 'license')
OPTIONAL_ONCE = ('export',)
OPTIONAL_MANY = (
    'url', 'author',
    'build_depend', 'build_export_depend', 'buildtool_depend', 'buildtool_export_depend',
    'exec_depend', 'depend', 'doc_depend', 'test_depend', 'conflict', 'replace',
    'group_depend', 'member_of_group',
)
DEPENDENCY_TAGS = (
    'build_depend', 'build_export_depend', 'buildtool_depend', 'buildtool_export_depend',
    'exec_depend', 'depend', 'doc_depend', 'test_depend',
)
VERSION_ATTRIBUTES = {'version_lt', 'version_lte', 'version_eq', 'version_gte', 'version_gt'}

# install_requires (PyPI name) -> rosdep key in package.xml; None: no rosdep key exists, the
# package comes from pip only (ROS installs get it from `pip install mmp_ros`). A new
# dependency must be added here, so that someone decides which it is.
PYPI_TO_ROSDEP = {
    'numpy': 'python3-numpy',
    'opencv-python-headless': 'python3-opencv',
    'pyyaml': 'python3-yaml',
    'onnxruntime': None,
    'rosbags': None,
    'mcap': None,
    'zstandard': None,  # comes with mcap
    'matplotlib': 'python3-matplotlib',
}


@pytest.fixture(scope='module')
def package() -> ET.Element:
    return ET.parse(PACKAGE_XML).getroot()


@pytest.fixture(scope='module')
def setup_kwargs() -> dict:
    """What setup.py passes to setuptools.setup, without building anything."""
    with mock.patch.object(setuptools, 'setup') as setup:
        runpy.run_path(str(REPO / 'setup.py'), run_name='__main__')
    return setup.call_args.kwargs


def _requirement_name(spec: str) -> str:
    return re.split(r'[<>=!~\[; ]', spec, maxsplit=1)[0].lower()


def _depends(package: ET.Element, *tags: str) -> set[str]:
    return {e.text.strip() for tag in tags for e in package.iter(tag)}


SCHEMA = REPO / 'test' / 'schema' / 'package_format3_rep149.xsd'


def _xmllint_schema(path: Path) -> subprocess.CompletedProcess:
    if shutil.which('xmllint') is None:
        pytest.skip('xmllint not installed: apt-get install libxml2-utils (.ci/run does)')
    return subprocess.run(
        ['xmllint', '--noout', '--schema', str(SCHEMA), str(path)],
        capture_output=True,
        text=True,
    )


def test_xmllint_validates_it_against_the_format_3_schema():
    result = _xmllint_schema(PACKAGE_XML)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ('old', 'new', 'complaint'),
    [
        ('format="3"', 'format="2"', 'format'),
        ('<maintainer email="maintainers@mmp-ros.invalid">', '<maintainer>', 'email'),
        ('<version>0.1.0</version>', '<version>0.1</version>', 'version'),
        ('<depend>rclpy</depend>', '<depends>rclpy</depends>', 'depends'),
    ],
)
def test_the_schema_rejects_a_broken_manifest(tmp_path, old, new, complaint):
    text = PACKAGE_XML.read_text()
    assert old in text
    broken = tmp_path / 'package.xml'
    broken.write_text(text.replace(old, new, 1))
    result = _xmllint_schema(broken)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_format_3_root_and_schema_reference(package):
    assert package.tag == 'package'
    assert package.get('format') == '3'
    assert 'package_format3.xsd' in PACKAGE_XML.read_text().split('<package', 1)[0]


def test_only_format_3_elements_and_their_counts(package):
    children = [child.tag for child in package]
    allowed = set(REQUIRED_ONCE + REQUIRED_ONE_OR_MORE + OPTIONAL_ONCE + OPTIONAL_MANY)
    assert set(children) <= allowed, set(children) - allowed
    for tag in REQUIRED_ONCE:
        assert children.count(tag) == 1, tag
    for tag in REQUIRED_ONE_OR_MORE:
        assert children.count(tag) >= 1, tag
    for tag in OPTIONAL_ONCE:
        assert children.count(tag) <= 1, tag
    # The schema's sequence: name, version, description come first, in that order.
    assert children[:3] == list(REQUIRED_ONCE)


def test_field_contents(package):
    assert re.fullmatch(r'[a-z][a-z0-9_]*', package.findtext('name'))  # REP 144
    assert re.fullmatch(r'\d+\.\d+\.\d+', package.findtext('version'))
    assert package.findtext('description').strip()
    for maintainer in package.iter('maintainer'):
        assert maintainer.text.strip()
        assert re.fullmatch(r'[^@\s]+@[^@\s]+\.[^@\s]+', maintainer.get('email', ''))
    for license_ in package.iter('license'):
        assert license_.text.strip()


def test_dependencies_are_plain_names_and_never_repeated(package):
    for tag in DEPENDENCY_TAGS:
        for element in package.iter(tag):
            assert re.fullmatch(r'[a-z0-9][a-z0-9_\-]*', element.text.strip()), element.text
            assert set(element.attrib) <= VERSION_ATTRIBUTES | {'condition'}, element.attrib
    # <depend> already means build, build_export and exec: a second listing is a mistake.
    seen: dict[str, str] = {}
    for tag in DEPENDENCY_TAGS:
        for element in package.iter(tag):
            name = element.text.strip()
            assert name not in seen or {seen[name], tag} == {'depend', 'test_depend'}, (
                f'{name} listed as <{seen.get(name)}> and <{tag}>'
            )
            seen.setdefault(name, tag)


def test_ament_python_build_type(package):
    assert package.findtext('export/build_type') == 'ament_python'


def test_name_and_version_match_setup_py(package, setup_kwargs):
    assert setup_kwargs['name'] == package.findtext('name')
    assert setup_kwargs['version'] == package.findtext('version')
    assert setup_kwargs['license'] == package.findtext('license')


def test_ros_wheels_are_declared_as_ros_dependencies(package, setup_kwargs):
    # `ros-rclpy` on PyPI is the rclpy package of a ROS install: one list, two package managers.
    runtime = _depends(package, 'depend', 'exec_depend')
    for spec in setup_kwargs['extras_require']['ros']:
        name = _requirement_name(spec)
        assert name.startswith('ros-'), spec
        assert name[4:].replace('-', '_') in runtime, f'{spec} has no <depend>/<exec_depend>'


def _is_ros_package(module: str) -> bool:
    """Whether the top-level ``module`` is installed as a ROS package: the prefix it is
    installed in (/opt/ros/<distro>, or the venv of the PyPI wheels) lists it in its ament
    index. A native install's rclpy and message packages come as egg-info distributions named
    as the packages (``rclpy``, not the wheels' ``ros-rclpy``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    return any((prefix / 'share/ament_index/resource_index/packages' / module).is_file()
               for prefix in Path(spec.origin).resolve().parents)


def test_every_ros_package_the_code_imports_is_a_dependency(package):
    # rcl_interfaces (parameter descriptors), rosgraph_msgs (/clock of replay) and
    # ament_index_python (share/ lookup) were imported but came only through rclpy's own.
    runtime = _depends(package, 'depend', 'exec_depend')
    imported = set()
    for source in [*REPO.glob('mmp_ros/**/*.py'), *REPO.glob('launch/*.py')]:
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split('.')[0])
    ros = {name for name in imported if _is_ros_package(name)}
    assert {'rclpy', 'sensor_msgs', 'diagnostic_msgs'} <= ros
    assert ros <= runtime, f'imported, not in package.xml: {sorted(ros - runtime)}'


def test_python_requirements_have_a_rosdep_decision(package, setup_kwargs):
    runtime = _depends(package, 'depend', 'exec_depend')
    for spec in setup_kwargs['install_requires']:
        name = _requirement_name(spec)
        assert name in PYPI_TO_ROSDEP, f'{name}: add it to PYPI_TO_ROSDEP (rosdep key or None)'
        key = PYPI_TO_ROSDEP[name]
        assert key is None or key in runtime, f'{name} needs <exec_depend>{key}</exec_depend>'


def test_data_files_install_what_ament_and_ros2_launch_look_for(setup_kwargs):
    name = setup_kwargs['name']
    targets = {target: files for target, files in setup_kwargs['data_files']}
    assert targets['share/ament_index/resource_index/packages'] == [f'resource/{name}']
    assert (REPO / 'resource' / name).is_file()
    assert 'package.xml' in targets[f'share/{name}']
    for folder in ('launch', 'config', 'models'):
        assert f'share/{name}/{folder}' in targets, folder
        for path in targets[f'share/{name}/{folder}']:
            assert (REPO / path).is_file(), path


def test_package_data_ships_the_dds_profile(setup_kwargs):
    from mmp_ros.dds import PROFILE_PATH

    patterns = setup_kwargs['package_data'][setup_kwargs['name']]
    relative = PROFILE_PATH.relative_to(REPO / setup_kwargs['name']).as_posix()
    assert any(Path(relative).match(pattern) for pattern in patterns), patterns


def test_console_scripts_point_at_callables_inside_the_package(setup_kwargs):
    name = setup_kwargs['name']
    for entry in setup_kwargs['entry_points']['console_scripts']:
        script, target = (part.strip() for part in entry.split('='))
        module, function = target.split(':')
        assert module.split('.')[0] == name, entry
        source = REPO / (module.replace('.', '/') + '.py')
        assert source.is_file(), f'{script}: {source} does not exist'
        assert re.search(rf'^def {function}\(', source.read_text(), re.MULTILINE), entry


def test_scripts_go_where_ros2_run_looks(setup_kwargs):
    # `ros2 run <pkg> <exe>` searches lib/<pkg>; setup.cfg must send scripts there.
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / 'setup.cfg')
    expected = f'$base/lib/{setup_kwargs["name"]}'
    assert config['develop']['script_dir'] == expected
    assert config['install']['install_scripts'] == expected


def test_the_ros_route_commands_need_no_extra(setup_kwargs):
    # `mmp_ros demo` on a native ROS install (rosdep + README's pip line) ran its whole
    # schedule and then died on `import matplotlib`: the run report's plots need it, and it
    # came only with the train extra. With every module of the extras unimportable, the
    # nodes, demo and evaluate (its plots included) must still import.
    required = {_requirement_name(spec) for spec in setup_kwargs['install_requires']}
    extras = {_requirement_name(spec) for specs in setup_kwargs['extras_require'].values()
              for spec in specs} - required
    blocked = sorted(module for module, dists in importlib.metadata.packages_distributions()
                     .items() if {d.lower() for d in dists} <= extras and module.isidentifier())
    assert 'torch' in blocked or importlib.util.find_spec('torch') is None
    modules = ('mmp_ros.ros.segmentation_node', 'mmp_ros.ros.dropout_node', 'mmp_ros.demo',
               'mmp_ros.evaluation.cli', 'mmp_ros.evaluation.plots')
    code = (f'import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n'
            f'for name in {modules!r}:\n    __import__(name)\n')
    done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_cli_knows_the_modules_of_the_train_extra(setup_kwargs):
    from mmp_ros.cli import TRAIN_MODULES

    train = {_requirement_name(spec) for spec in setup_kwargs['extras_require']['train']}
    provided: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(dist.lower(), set()).add(module)
    for dist in train:
        if dist not in provided:
            pytest.skip(f"needs {dist} (pip install '.[train]')")
        assert provided[dist] & TRAIN_MODULES, f'{dist}: add its module to cli.TRAIN_MODULES'
    assert set().union(*(provided[d] for d in train)) >= TRAIN_MODULES


def test_test_depends_are_what_the_tests_use(package):
    # ament_copyright, ament_flake8 and launch_testing_ros (the package template's) were
    # declared, so `rosdep install` installed them, but no test runs or imports them.
    imported = set()
    for source in REPO.glob('test/*.py'):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split('.')[0])
    test_depends = _depends(package, 'test_depend')
    assert 'python3-pytest' in test_depends  # what colcon test runs them with
    unused = test_depends - {'python3-pytest', 'python3-pytest-timeout'} - imported
    assert not unused, sorted(unused)


def test_the_timeout_plugin_pyproject_configures_is_a_test_depend(package):
    # pytest-timeout came only with the test extra, so rosdep left it out and colcon test
    # ran the tests of a native install without pyproject's 300 s timeout: a test that hangs
    # would hang the run.
    assert re.search(r'^timeout = 300$', (REPO / 'pyproject.toml').read_text(), re.M)
    assert 'python3-pytest-timeout' in _depends(package, 'test_depend')


# Not this run's PYTEST_ADDOPTS (colcon test passes its --junit-xml there).
PYTEST_ENV = {name: value for name, value in os.environ.items() if name != 'PYTEST_ADDOPTS'}


def _pytest(*args: str) -> subprocess.CompletedProcess:
    """This suite's pytest in a process of its own, from the checkout (as colcon test runs it)."""
    return subprocess.run([sys.executable, '-m', 'pytest', *args], cwd=REPO, env=PYTEST_ENV,
                          capture_output=True, text=True, timeout=120)


def test_pytest_without_pytest_timeout_runs_the_suite():
    # colcon test on a native install runs pytest, and python3-pytest is the only test_depend:
    # pyproject's addopts held --timeout=300, so without pytest-timeout pytest refused to
    # start ('unrecognized arguments'), and the timeout mark failed --strict-markers. Now
    # the timeout is an ini setting that conftest accepts (with the mark) where the plugin is
    # not there; -W error: not even a warning about it.
    done = _pytest('-p', 'no:timeout', '-W', 'error::pytest.PytestWarning', '--collect-only',
                   '-q', 'test/test_demo.py', 'test/test_dropout_node.py')
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_with_pytest_timeout_every_test_has_300_s():
    pytest.importorskip('pytest_timeout', reason="needs pytest-timeout (pip install '.[test]')")
    # make test and .ci/run have it: pyproject's timeout, as the header says.
    done = _pytest('--collect-only', 'test/test_demo.py')
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert 'timeout: 300.0s' in done.stdout.splitlines(), done.stdout[:2000]


# pytest (its arguments the process's) where the modules {blocked} and theirs are not installed.
PYTEST_WITHOUT = """
import sys


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + '.') for b in {blocked!r}):
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)


sys.meta_path.insert(0, NotInstalled())

import pytest

sys.exit(pytest.main(sys.argv[1:]))
"""


def _extra_modules(setup_kwargs, *keep: str) -> list[str]:
    """The modules that only setup.py's train, test and tensorrt extras provide (a native ROS 2
    install has none of them; pytest, its test_depend, stays), less those of ``keep``."""
    extras = {_requirement_name(spec) for extra in ('train', 'test', 'tensorrt')
              for spec in setup_kwargs['extras_require'][extra]}
    required = {_requirement_name(spec) for spec in setup_kwargs['install_requires']}
    missing = extras - required - {'pytest', *keep}
    modules = [module for module, dists in importlib.metadata.packages_distributions().items()
               if {d.lower() for d in dists} <= missing and module.isidentifier()]
    # rosbags-image installs into rosbags' (a runtime dependency) namespace
    return sorted([*modules, *(['rosbags.image'] if 'rosbags-image' in missing else [])])


def _assert_each_names_its_package_and_extra(reasons: list[tuple[str, str]], setup_kwargs):
    for where, reason in reasons:
        match = re.fullmatch(r"needs (\S+) \(pip install '\.\[(\w+)\]'\)", reason)
        assert match, (where, reason)
        package, extra = match.groups()
        assert package in {_requirement_name(s) for s in setup_kwargs['extras_require'][extra]}


@pytest.mark.slow
def test_without_the_extras_the_modules_that_need_them_are_skipped_and_say_why(setup_kwargs):
    # colcon test on a native install (rosdep's packages and the README's pip line): 18
    # modules failed to collect, on `import torch`, onnx, polanalyser or rosbags.image, and
    # then no test ran. Each that needs the train extra now skips, the reason naming the
    # package to install and its extra; the others are collected.
    blocked = _extra_modules(setup_kwargs)
    done = subprocess.run([sys.executable, '-c', PYTEST_WITHOUT.format(blocked=blocked),
                           '-p', 'no:timeout', '-p', 'no:cacheprovider', '--collect-only', '-q',
                           '-rs'], cwd=REPO, env=PYTEST_ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reasons = [(module, reason) for module, reason
               in re.findall(r'^SKIPPED \[\d+\] (test/\w+\.py):\d+: (.*)$', done.stdout, re.M)
               if not reason.startswith('needs rclpy ')]  # no extra's: ROS 2's
    assert reasons, done.stdout[-3000:]
    _assert_each_names_its_package_and_extra(reasons, setup_kwargs)
    assert re.search(r'^\d+ tests? collected', done.stdout, re.M), done.stdout[-3000:]


def test_without_the_test_extra_only_the_comparisons_with_its_packages_skip(setup_kwargs):
    # polanalyser and rosbags-image are the references a few decoder tests compare with; the
    # other tests of those modules need neither and run.
    blocked = _extra_modules(setup_kwargs, *(_requirement_name(spec) for spec
                                             in setup_kwargs['extras_require']['train']))
    modules = ('test/test_sensors_compressed.py', 'test/test_sensors_image.py',
               'test/test_sensors_polarization.py')
    done = subprocess.run([sys.executable, '-c', PYTEST_WITHOUT.format(blocked=blocked),
                           '-p', 'no:timeout', '-p', 'no:cacheprovider', '-q', '-rs', *modules],
                          cwd=REPO, env=PYTEST_ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    skipped = re.findall(r'^SKIPPED \[(\d+)\] test/\w+\.py:\d+: (.*)$', done.stdout, re.M)
    assert {reason for _, reason in skipped} == {
        "needs polanalyser (pip install '.[test]')", "needs rosbags-image (pip install '.[test]')"}
    count = sum(int(n) for n, _ in skipped)
    summary = re.search(r'^(\d+) passed, (\d+) skipped in ', done.stdout, re.M)
    assert summary and int(summary[2]) == count and int(summary[1]) > count, done.stdout


@pytest.mark.slow
def test_without_the_extras_the_cli_tests_pass_or_skip_and_say_why(setup_kwargs):
    # The tests of the train commands' arguments ran them, which said 'needs torch' (status
    # 1, not argparse's 2): 12 failures on a native install. They skip, saying so.
    blocked = _extra_modules(setup_kwargs)
    done = subprocess.run([sys.executable, '-c', PYTEST_WITHOUT.format(blocked=blocked),
                           '-p', 'no:timeout', '-p', 'no:cacheprovider', '-q', '-rs',
                           'test/test_cli.py'], cwd=REPO, env=PYTEST_ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reasons = re.findall(r'^SKIPPED \[\d+\] (test/\w+\.py:\d+): (.*)$', done.stdout, re.M)
    assert reasons, done.stdout[-3000:]
    _assert_each_names_its_package_and_extra(reasons, setup_kwargs)
