"""Test-session setup: loopback-only DDS on a domain of its own, and shared paths."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from mmp_ros.dds import reserve_domain_id

# Before anything imports rclpy: never leave loopback, never hear another run (a domain this
# session holds for itself, unless ROS_DOMAIN_ID is set).
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
reserve_domain_id()

# A run started with SIGINT ignored (a script's background job, `colcon test &` or nohup) has
# no Python Ctrl-C handler: the tests that press Ctrl-C on this process got no
# KeyboardInterrupt, and `mmp_ros record` under test recorded forever. Such a run gets the
# handler a run from a terminal has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data' / 'real'


def repo_env(*folders: Path, **variables: str) -> dict[str, str]:
    """os.environ (and ``variables``) for a child process that imports this checkout: REPO,
    then ``folders`` (``REPO / 'test'`` for the test helpers), put before the PYTHONPATH this
    process has. A native ROS 2 install (setup.bash) finds rclpy and the message packages on
    PYTHONPATH: a child started with PYTHONPATH=REPO alone could not import them."""
    env = dict(os.environ, **variables)
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [str(REPO), *map(str, folders), os.environ.get('PYTHONPATH')]))
    return env


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-timeout (``colcon test`` on a native ROS 2 install may have pytest alone)
    its ``timeout`` ini setting is accepted and does nothing, instead of a warning."""
    if not pluginmanager.hasplugin('timeout'):
        parser.addini('timeout', "pytest-timeout's; without it, no timeout applies")


def pytest_configure(config: pytest.Config) -> None:
    """... and so is its mark, which --strict-markers would make a collection error."""
    if not config.pluginmanager.hasplugin('timeout'):
        config.addinivalue_line('markers', "timeout(seconds): pytest-timeout's; without it, "
                                'no timeout applies')


# The modules of setup.py's train and test extras that tests import, with the package that
# provides each and its extra. make test has them all; colcon test on a native ROS 2 install
# (rosdep, and pip's onnxruntime rosbags mcap) has none.
EXTRA_MODULES = {
    'torch': ('torch', 'train'),
    'einops': ('einops', 'train'),
    'onnx': ('onnx', 'train'),
    'polanalyser': ('polanalyser', 'test'),
    'rosbags.image': ('rosbags-image', 'test'),
}


def needs(module: str) -> ModuleType:
    """``module`` (a key of EXTRA_MODULES), imported; where it is not installed, the test (or,
    called before a test module's imports, the whole module) is skipped with the package and
    the extra to install, rather than failing or the module failing to collect. An installed
    one that does not import (a module of its own missing) is an error, never a skip."""
    __tracebackhide__ = True  # the skip's location: the test or module that needs it
    package, extra = EXTRA_MODULES[module]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or not f'{module}.'.startswith(f'{error.name}.'):
            raise
    pytest.skip(f"needs {package} (pip install '.[{extra}]')", allow_module_level=True)


def skip_where_an_extra_is_missing(error: ModuleNotFoundError) -> None:
    """Skipped as needs() skips where ``error`` is that of a module of EXTRA_MODULES that is
    not installed; any other is for the caller to raise."""
    __tracebackhide__ = True
    for module in EXTRA_MODULES:
        if error.name is not None and f'{module}.'.startswith(f'{error.name}.'):
            needs(module)


def needs_importable(name: str) -> ModuleType:
    """The project's module ``name`` (a command's) imported, or skipped where it needs a
    module of EXTRA_MODULES that is not installed."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        skip_where_an_extra_is_missing(error)
        raise


@contextmanager
def script_module(name: str) -> Iterator[ModuleType]:
    """``scripts/NAME.py`` as the module ``NAME``, in ``sys.modules`` while in use (a
    script's dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as error:  # a script that needs an extra skips
            skip_where_an_extra_is_missing(error)
            raise
        yield module
    finally:
        del sys.modules[name]


def script_fixture(name: str):
    """A module-scoped fixture of ``scripts/NAME.py`` as a module, named by the attribute it
    is assigned to in a test file (``bench = script_fixture('bench_node')``)."""

    @pytest.fixture(scope='module')
    def script() -> Iterator[ModuleType]:
        with script_module(name) as module:
            yield module

    return script


@contextmanager
def training_stopped_at(step: int, error: type[BaseException]) -> Iterator[None]:
    """Inside it, training raises ``error`` as it logs ``step``: a kill or Ctrl-C there,
    after the checkpoints of the steps before it."""
    from training.history import History

    append = History.append

    def stopping(history, values):
        if values['step'] == step:
            raise error
        append(history, values)

    History.append = stopping
    try:
        yield
    finally:
        History.append = append


def ctrl_c_as_the_bag_file_opens(monkeypatch: pytest.MonkeyPatch, storage: str) -> None:
    """From now on, a real SIGINT reaches this process right after rosbags opens the file of a
    new bag in ``storage`` ('mcap' or 'sqlite3'): the user pressing Ctrl-C as a bag is made."""
    from rosbags.rosbag2 import Writer

    from mmp_ros.bags.recording import STORAGES

    plugin = Writer.STORAGE_PLUGINS[STORAGES[storage]]
    create = plugin.__init__

    def impatient_init(self, *args, **kwargs):
        create(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(plugin, '__init__', impatient_init)


@pytest.fixture(scope='session')
def real_data() -> Path:
    """The real sensor samples shipped beside the checkout (DESIGN: ../shared/data/real)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f'real sensor samples not found at {SHARED_DATA}; clone beside ../shared')
    return SHARED_DATA


@pytest.fixture
def restored_environ():
    """For tests that write os.environ (init_ros sets the DDS profile): put it back after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope='module')
def torch_one_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core machine intra-op
    threads wait on each other (measured 50x slower under load). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures('torch_one_thread')``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
