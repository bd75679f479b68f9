"""The package's DDS setup: which middleware and which Fast DDS profile a process starts with.

Fast DDS reads its XML profile once, when the first participant is created (that is, inside
``rclpy.init``/the first node), from the file named by ``FASTDDS_DEFAULT_PROFILES_FILE`` (or,
failing that, ``DEFAULT_FASTDDS_PROFILES.xml`` in the working directory). So the profile can only
be chosen through the environment, before ``rclpy.init``; ``mmp_ros.ros.context.init_ros`` does
it for every process of the package. This module is plain Python (no rclpy) so that it can be
tested and reused by launch files and scripts that only prepare a child's environment.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import tempfile
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from mmp_ros.errors import InputError

PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
# Fast DDS 2.x name; Fast DDS 3 still honours it (with a deprecation warning), so a user who
# set only this one has chosen a profile too.
LEGACY_PROFILE_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'
RMW_ENV = 'RMW_IMPLEMENTATION'
DEFAULT_RMW = 'rmw_fastrtps_cpp'
DOMAIN_ENV = 'ROS_DOMAIN_ID'
# Fast DDS's UDP ports are 7400 + 250 * domain + small offsets: past domain 232 they exceed
# 65535, and the process exits (status 1, one Fast DDS log line) at its first node.
MAX_DOMAIN_ID = 232
# The domains a process that needs one of its own picks from: those whose Fast DDS ports stay
# clear of Linux's ephemeral ports (32768-60999), 1..101 and 215..232; not 0, every ROS
# graph's default.
OWN_DOMAINS = (*range(1, 102), *range(215, MAX_DOMAIN_ID + 1))
DOMAIN_LOCK = 'mmp_ros_domain_{}.lock'
_reserved: dict[int, int] = {}  # domain -> the descriptor whose lock reserves it

# Installed inside the package (setup.py package_data), never zipped: Fast DDS needs a real
# file path.
PROFILE_PATH = Path(__file__).resolve().parent / 'resources' / 'fastdds_profile.xml'

SHM_DIR = Path('/dev/shm')
# A participant's segment `fastdds_<16 hex>` and its lock file `<segment>_el`, which the owner
# holds (flock) for as long as it lives.
_SEGMENT_LOCK = re.compile(r'fastdds_[0-9a-f]{16}_el')
# A lock file younger than this may belong to a participant between creating and locking it.
STALE_AFTER_S = 5.0


@dataclass(frozen=True)
class DdsSetup:
    """What ``apply_dds_profile`` found and did, for one log line at start-up."""

    rmw_implementation: str
    rmw_set_by_us: bool
    profile_file: str | None  # the profile Fast DDS will load; None: Fast DDS defaults
    profile_set_by_us: bool
    # Other machines asked for (ROS_AUTOMATIC_DISCOVERY_RANGE, ROS_STATIC_PEERS) that the
    # package's loopback profile will not reach; '' when none.
    unreached: str = ''

    def describe(self) -> str:
        rmw = f'{self.rmw_implementation} ({"mmp_ros default" if self.rmw_set_by_us else "user"})'
        if self.rmw_implementation != DEFAULT_RMW:
            return f'DDS: {rmw}; the Fast DDS profile does not apply to this middleware'
        if self.profile_file is None:
            return f'DDS: {rmw}, Fast DDS default transports (no profile)'
        origin = 'mmp_ros shared-memory/loopback profile' if self.profile_set_by_us else 'user'
        missing = '' if Path(self.profile_file).is_file() else ' -- FILE NOT FOUND'
        unreached = (f'; {self.unreached} asks for other machines, but this profile keeps '
                     'UDP on 127.0.0.1: give a profile of your own (docs/dds.md)'
                     if self.unreached else '')
        return f'DDS: {rmw}, profile {self.profile_file} ({origin}){missing}{unreached}'


def apply_dds_profile(
    env: MutableMapping[str, str] | None = None, *, profile: bool = True
) -> DdsSetup:
    """Default the middleware and the Fast DDS profile in ``env``; never override the user's.

    ``env`` is ``os.environ`` unless given (a child process's environment, a test's dict).
    Call it before ``rclpy.init``: Fast DDS reads the variable when the participant is made.
    ``profile=False`` is the explicit opt-out (``--no-profile``): every profile variable is
    removed so that Fast DDS runs on its built-in transports, for comparisons.
    """
    env = os.environ if env is None else env
    rmw_set_by_us = not env.get(RMW_ENV)
    if rmw_set_by_us:
        env[RMW_ENV] = DEFAULT_RMW
    if not profile:
        env.pop(PROFILE_ENV, None)
        env.pop(LEGACY_PROFILE_ENV, None)
        return DdsSetup(env[RMW_ENV], rmw_set_by_us, None, profile_set_by_us=False)
    user_profile = env.get(PROFILE_ENV) or env.get(LEGACY_PROFILE_ENV)
    if user_profile:
        return DdsSetup(env[RMW_ENV], rmw_set_by_us, user_profile, profile_set_by_us=False)
    env[PROFILE_ENV] = str(PROFILE_PATH)
    reach, peers = env.get('ROS_AUTOMATIC_DISCOVERY_RANGE'), env.get('ROS_STATIC_PEERS')
    asked = [*([f'ROS_AUTOMATIC_DISCOVERY_RANGE={reach}']
               if reach in ('SUBNET', 'SYSTEM_DEFAULT') else []),
             *([f'ROS_STATIC_PEERS={peers}'] if peers else [])]
    return DdsSetup(env[RMW_ENV], rmw_set_by_us, str(PROFILE_PATH), profile_set_by_us=True,
                    unreached=' and '.join(asked))


def domain_id_problem(env: MutableMapping[str, str] | None = None) -> str | None:
    """Why Fast DDS cannot run on ``env``'s ``ROS_DOMAIN_ID``; None if it can.

    A value that is not a whole number is left to rcl, which names it.
    """
    env = os.environ if env is None else env
    try:
        domain = int(env.get(DOMAIN_ENV) or 0)
    except ValueError:
        return None
    if env.get(RMW_ENV, DEFAULT_RMW) != DEFAULT_RMW or 0 <= domain <= MAX_DOMAIN_ID:
        return None
    return (
        f'{DOMAIN_ENV}={domain} is outside 0..{MAX_DOMAIN_ID}, the domains whose UDP ports '
        'Fast DDS can compute (7400 + 250 x domain)'
    )


def reserve_domain_id(env: MutableMapping[str, str] | None = None, *,
                      domains: tuple[int, ...] = OWN_DOMAINS,
                      lock_dir: str | Path | None = None) -> str:
    """``env``'s ``ROS_DOMAIN_ID``: the user's where set, else one of ``domains`` that no
    other process on this machine holds, set in ``env`` (``os.environ`` unless given).

    A domain is held by an exclusive lock (``flock``) on ``<lock_dir>/mmp_ros_domain_<id>.lock``
    (``lock_dir``: the temporary folder) that this process keeps until it exits, however it
    ends; the children it starts with ``env`` share it. Test sessions, demos and benchmarks
    started at once picked a random domain each, and two could pick the same one and hear
    each other's nodes. InputError where every one of ``domains`` is held.
    """
    env = os.environ if env is None else env
    if env.get(DOMAIN_ENV):
        return env[DOMAIN_ENV]
    folder = Path(tempfile.gettempdir() if lock_dir is None else lock_dir)
    held = [d for d in _reserved if d in domains]  # this process's: it shares it
    for domain in held or random.sample(domains, len(domains)):
        if domain not in _reserved:
            try:
                fd = os.open(folder / DOMAIN_LOCK.format(domain), os.O_RDONLY | os.O_CREAT,
                             0o644)
            except OSError:  # another user's, unreadable
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by another process
                os.close(fd)
                continue
            _reserved[domain] = fd
        env[DOMAIN_ENV] = str(domain)
        return env[DOMAIN_ENV]
    raise InputError(
        f'all {len(domains)} ROS domains mmp_ros picks from are held by other processes '
        f'({folder / DOMAIN_LOCK.format("*")}): set {DOMAIN_ENV} to one of your own')


def rmw_problem(env: MutableMapping[str, str] | None = None) -> str | None:
    """Why ``env``'s ``RMW_IMPLEMENTATION`` cannot load; None if it can or this cannot tell.

    The ROS 2 PyPI wheels link rcl to rmw_fastrtps_cpp directly, without the
    rmw_implementation library that loads the middleware a user names. rcl checks the
    variable when its library loads, that is at ``import rclpy``, and ends the process there
    (status 102) with a line that names the middleware it found, not what to do. So the check
    comes first: where the ``librcl.so`` on ``LD_LIBRARY_PATH`` has no
    ``librmw_implementation.so`` beside it, any other middleware is refused with the way out.
    A native install (rmw_implementation present) is left to rcl.
    """
    env = os.environ if env is None else env
    wanted = env.get(RMW_ENV) or DEFAULT_RMW
    if wanted == DEFAULT_RMW:
        return None
    for folder in filter(None, env.get('LD_LIBRARY_PATH', '').split(os.pathsep)):
        lib = Path(folder)
        if (lib / 'librcl.so').is_file():
            if (lib / 'librmw_implementation.so').is_file():
                return None
            return (
                f'{RMW_ENV}={wanted}, but the ROS 2 installed here ({lib}) is built with '
                f'{DEFAULT_RMW} alone (the PyPI wheels): unset {RMW_ENV} or set it to '
                f'{DEFAULT_RMW} for mmp_ros, or run it on a native ROS 2 install that has '
                f'{wanted}'
            )
    return None


def remove_stale_shm_segments(shm_dir: Path = SHM_DIR, *, now: float | None = None) -> int:
    """Delete the shared-memory segments of Fast DDS participants that died; how many.

    A process killed (SIGKILL, a crash) leaves its segment in ``/dev/shm`` and Fast DDS never
    reclaims it: with the profile's 32 MiB segment, each such process leaks 32 MiB of RAM for
    good. A segment whose lock file nobody holds has no owner (the same test as Fast DDS's own
    ``fastdds shm clean``). ``now`` (``time.time()`` unless given) dates the lock files.
    """
    now = time.time() if now is None else now
    removed = 0
    for lock in shm_dir.glob('fastdds_*_el'):
        if not _SEGMENT_LOCK.fullmatch(lock.name):
            continue
        try:
            if now - lock.stat().st_mtime < STALE_AFTER_S or _is_locked(lock):
                continue
            lock.with_name(lock.name.removesuffix('_el')).unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
        except OSError:  # another user's, or removed meanwhile by another process
            continue
        removed += 1
    return removed


def _is_locked(path: Path) -> bool:
    with open(path, 'ab') as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
