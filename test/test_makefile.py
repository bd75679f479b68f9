"""The Makefile's bootstrap of .venv, run by make itself against a stand-in interpreter: a
Python script that logs what it is asked and plays a venv (a marker file for pip), so that
each case takes a second instead of a full install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!{python}
import json, os, shutil, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ['FAKE_LOG'], 'a') as log:
    log.write(json.dumps(args) + '\\n')
if args[:2] == ['-m', 'venv']:  # a venv: this script as its python, pip marked present
    venv = Path(args[-1])
    (venv / 'bin').mkdir(parents=True, exist_ok=True)
    shutil.copy(sys.argv[0], venv / 'bin' / 'python')
    (venv / 'has-pip').touch()
elif args[:2] == ['-m', 'pip']:
    if not (Path(sys.argv[0]).parents[1] / 'has-pip').exists():
        sys.exit('No module named pip')
    if 'requirements/lock.txt' in args:
        sys.exit(int(os.environ.get('FAKE_LOCK_STATUS', '0')))
elif args[0] == '-c':
    sys.version_info = (*map(int, os.environ['FAKE_VERSION'].split('.')), 0, 'final', 0)
    exec(args[1])
"""


def _make(tmp_path: Path, version: str = '3.11', lock_status: int = 0) -> tuple[int, list, str]:
    """``make venv`` with the stand-in as python3; (status, the stand-in's calls, output)."""
    if shutil.which('make') is None:
        pytest.skip('make is not installed')
    fake = tmp_path / 'python3'
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / 'calls.jsonl'
    log.unlink(missing_ok=True)
    env = {**os.environ, 'FAKE_LOG': str(log), 'FAKE_VERSION': version,
           'FAKE_LOCK_STATUS': str(lock_status)}
    done = subprocess.run(['make', '--no-print-directory', 'venv', f'PYTHON={fake}',
                           f'VENV={tmp_path / "venv"}'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, calls, done.stdout + done.stderr


def test_a_venv_left_without_pip_is_made_again(tmp_path):
    # Ctrl-C while `python3 -m venv` ran ensurepip: bin/python exists, pip does not. Every
    # later make stopped at 'No module named pip' until `make clean`.
    (tmp_path / 'venv' / 'bin').mkdir(parents=True)
    fake_venv_python = tmp_path / 'venv' / 'bin' / 'python'
    fake_venv_python.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake_venv_python.chmod(0o755)
    status, calls, _ = _make(tmp_path)
    assert status == 0
    assert ['-m', 'venv', '--clear', str(tmp_path / 'venv')] in calls
    assert (tmp_path / 'venv' / '.installed').exists()


def test_a_venv_whose_interpreter_no_longer_runs_is_made_again(tmp_path):
    # The Python that made it removed or upgraded: its stamp was still newer than the lock,
    # so make took the venv as built and every command failed on its interpreter.
    assert _make(tmp_path)[0] == 0
    (tmp_path / 'venv' / 'bin' / 'python').write_text('#!/nonexistent/python3.11\n')
    status, calls, output = _make(tmp_path)
    assert status == 0, output
    assert ['-m', 'venv', '--clear', str(tmp_path / 'venv')] in calls


def test_a_working_venv_is_kept(tmp_path):
    assert _make(tmp_path)[0] == 0
    (tmp_path / 'venv' / '.installed').unlink()  # as after a change of the lock
    status, calls, _ = _make(tmp_path)
    assert status == 0 and not any(call[:2] == ['-m', 'venv'] for call in calls)


def _installs_ranges(calls: list) -> bool:
    return any(call[:3] == ['-m', 'pip', 'install'] and '.[ros,train,test]' in call
               for call in calls)


def _says_it_falls_back(output: str) -> bool:  # make echoes the recipe: its echo lines too
    return any(line.startswith('requirements/lock.txt is resolved for CPython 3.11; on this')
               for line in output.splitlines())


def test_on_the_locks_python_a_pin_that_does_not_install_stops_the_bootstrap(tmp_path):
    # On 3.11 a failed lock install (a network error, a Ctrl-C that pip turns into status 1)
    # said "on this Python, installing setup.py's ranges", installed them and wrote the
    # stamp: an unpinned venv, never retried until the lock changed.
    status, calls, output = _make(tmp_path, version='3.11', lock_status=1)
    assert status != 0 and not _installs_ranges(calls), output
    assert not _says_it_falls_back(output)
    assert not (tmp_path / 'venv' / '.installed').exists()


def test_another_python_falls_back_to_the_ranges_and_says_so(tmp_path):
    status, calls, output = _make(tmp_path, version='3.12', lock_status=1)
    assert status == 0 and _installs_ranges(calls), output
    assert _says_it_falls_back(output)
    (tmp_path / 'pinned').mkdir()  # where the pins install, they are kept on any Python
    status, calls, _ = _make(tmp_path / 'pinned', version='3.12')
    assert status == 0 and not _installs_ranges(calls)
