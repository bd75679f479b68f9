"""The tests' child processes keep the PYTHONPATH the run was started with.

A native ROS 2 install (``source /opt/ros/kilted/setup.bash``) finds rclpy and the message
packages on PYTHONPATH. The tests started their children with ``PYTHONPATH=REPO`` in its place,
so under ``colcon test`` there every child that imports rclpy (the node, replay, record, the
DDS probes) ended in ModuleNotFoundError. conftest.repo_env puts the checkout before it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, repo_env

MARKER = 'mmp_ros_pythonpath_marker'


def _node_integration_env() -> dict[str, str]:
    pytest.importorskip('rclpy', reason='needs rclpy (ros extra or ROS 2)')
    from test_node_integration import child_env

    return child_env()


BUILDERS = {
    'repo_env': repo_env,
    'repo_env_with_tests': lambda: repo_env(REPO / 'test'),
    'node_integration_child_env': _node_integration_env,
}


@pytest.mark.parametrize('builder', BUILDERS)
def test_a_child_imports_this_checkout_and_what_the_users_pythonpath_holds(
    builder, monkeypatch, tmp_path
):
    (tmp_path / 'path').mkdir()
    (tmp_path / 'path' / f'{MARKER}.py').write_text('')
    (tmp_path / 'cwd').mkdir()  # neither the marker's folder nor the checkout
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        filter(None, [str(tmp_path / 'path'), os.environ.get('PYTHONPATH')])))
    done = subprocess.run(
        [sys.executable, '-c', f'import {MARKER}, mmp_ros\nprint(mmp_ros.__file__)'],
        env=BUILDERS[builder](), cwd=tmp_path / 'cwd', capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # was: No module named 'mmp_ros_pythonpath_marker'
    assert Path(done.stdout.strip()).is_relative_to(REPO), done.stdout  # the checkout first


def _named(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 'PYTHONPATH'


def _sets_pythonpath(node: ast.AST) -> bool:
    """``dict(..., PYTHONPATH=...)``, a dict display with the key, ``env['PYTHONPATH'] = ...``
    or ``setenv('PYTHONPATH', ...)`` (but ``setenv('PYTHONPATH', repo_env()['PYTHONPATH'])``)."""
    if isinstance(node, ast.Call):
        return any(k.arg == 'PYTHONPATH' for k in node.keywords) or (
            getattr(node.func, 'attr', None) == 'setenv' and bool(node.args)
            and _named(node.args[0]) and 'repo_env(' not in ast.unparse(node))
    if isinstance(node, ast.Dict):
        return any(_named(key) for key in node.keys)
    return isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Subscript) and _named(t.slice) for t in node.targets)


def test_every_test_child_gets_its_pythonpath_from_repo_env():
    # Those that drop PYTHONPATH on purpose (test_install, test_bench_node) set none.
    found = [f'{path.name}:{node.lineno}' for path in sorted((REPO / 'test').glob('*.py'))
             if path.name not in ('conftest.py', 'test_child_env.py')
             for node in ast.walk(ast.parse(path.read_text())) if _sets_pythonpath(node)]
    assert not found, found


def test_the_scripts_and_the_package_keep_the_users_pythonpath_for_their_children():
    # scripts/replay_timing.py started its player with PYTHONPATH=REPO alone: on a native
    # install that child could not import rclpy. Each that sets one keeps the user's.
    sources = [*sorted((REPO / 'scripts').glob('*.py')), *sorted(REPO.glob('mmp_ros/**/*.py'))]
    found = [f'{path.relative_to(REPO)}:{node.lineno}' for path in sources
             for node in ast.walk(ast.parse(path.read_text()))
             if _sets_pythonpath(node) and "get('PYTHONPATH'" not in ast.unparse(node)]
    assert not found, found
