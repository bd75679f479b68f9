"""The shipped Fast DDS profile: what apply_dds_profile sets, that Fast DDS loads the file, and
that camera-sized frames reach another process with it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import repo_env

from mmp_ros.dds import (
    DEFAULT_RMW,
    LEGACY_PROFILE_ENV,
    PROFILE_ENV,
    PROFILE_PATH,
    RMW_ENV,
    STALE_AFTER_S,
    apply_dds_profile,
    remove_stale_shm_segments,
    reserve_domain_id,
    rmw_problem,
)

REPO = Path(__file__).resolve().parents[1]
NS = {'f': 'http://www.eprosima.com'}
# A process that reserves a domain of 7 and 8 in a lock folder, prints it, and holds it until
# its stdin closes.
RESERVE = """
import sys
from mmp_ros.dds import reserve_domain_id
env = {}
try:
    print(reserve_domain_id(env, domains=(7, 8), lock_dir=sys.argv[1]), flush=True)
except Exception as exc:
    print(exc, flush=True)
sys.stdin.read()
"""


def test_defaults_profile_and_middleware_when_unset():
    env: dict[str, str] = {}
    setup = apply_dds_profile(env)
    assert env == {PROFILE_ENV: str(PROFILE_PATH), RMW_ENV: DEFAULT_RMW}
    assert setup.profile_set_by_us and setup.rmw_set_by_us
    assert 'mmp_ros shared-memory/loopback profile' in setup.describe()


@pytest.mark.parametrize(('env', 'named'), [
    ({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}, 'ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET'),
    ({'ROS_STATIC_PEERS': '192.168.1.5'}, 'ROS_STATIC_PEERS=192.168.1.5'),
    ({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}, None),
])
def test_other_machines_asked_for_are_named_as_out_of_the_profiles_reach(env, named):
    setup = apply_dds_profile(env)
    if named is None:
        assert 'other machines' not in setup.describe()
    else:
        assert f'{named} asks for other machines' in setup.describe()


@pytest.mark.parametrize('variable', [PROFILE_ENV, LEGACY_PROFILE_ENV])
def test_never_overrides_a_users_profile(variable, tmp_path):
    mine = tmp_path / 'mine.xml'
    mine.write_text('<dds/>')
    env = {variable: str(mine), RMW_ENV: 'rmw_fastrtps_cpp'}
    setup = apply_dds_profile(env)
    assert env == {variable: str(mine), RMW_ENV: 'rmw_fastrtps_cpp'}
    assert setup.profile_file == str(mine) and not setup.profile_set_by_us
    assert not setup.rmw_set_by_us
    assert '(user)' in setup.describe() and 'NOT FOUND' not in setup.describe()


def test_an_empty_variable_counts_as_unset():
    # Fast DDS itself treats an empty path as a file it cannot find, and logs an error.
    env = {PROFILE_ENV: '', RMW_ENV: ''}
    apply_dds_profile(env)
    assert env == {PROFILE_ENV: str(PROFILE_PATH), RMW_ENV: DEFAULT_RMW}


def test_a_missing_user_profile_is_pointed_out():
    setup = apply_dds_profile({PROFILE_ENV: '/nonexistent/profile.xml'})
    assert 'FILE NOT FOUND' in setup.describe()


def test_another_middleware_is_kept_and_said_to_ignore_the_profile():
    env = {RMW_ENV: 'rmw_cyclonedds_cpp'}
    setup = apply_dds_profile(env)
    assert env[RMW_ENV] == 'rmw_cyclonedds_cpp'
    assert 'does not apply' in setup.describe()


def _ros_lib(tmp_path: Path, *libraries: str) -> str:
    lib = tmp_path / 'lib'
    lib.mkdir()
    for name in ('librcl.so', *libraries):
        (lib / name).touch()
    return str(lib)


def test_a_middleware_the_wheels_cannot_load_is_named_with_the_way_out(tmp_path):
    wheels = _ros_lib(tmp_path, 'librmw_fastrtps_cpp.so')
    problem = rmw_problem({RMW_ENV: 'rmw_cyclonedds_cpp',
                           'LD_LIBRARY_PATH': f'/nowhere:{wheels}'})
    assert problem.startswith('RMW_IMPLEMENTATION=rmw_cyclonedds_cpp, but the ROS 2 installed '
                              f'here ({wheels}) is built with rmw_fastrtps_cpp alone')
    assert 'unset RMW_IMPLEMENTATION' in problem
    for fine in ({}, {RMW_ENV: ''}, {RMW_ENV: DEFAULT_RMW}):
        assert rmw_problem({**fine, 'LD_LIBRARY_PATH': wheels}) is None


def test_a_native_install_or_an_unknown_one_is_left_to_rcl(tmp_path):
    native = _ros_lib(tmp_path, 'librmw_implementation.so')
    assert rmw_problem({RMW_ENV: 'rmw_cyclonedds_cpp', 'LD_LIBRARY_PATH': native}) is None
    assert rmw_problem({RMW_ENV: 'rmw_cyclonedds_cpp'}) is None  # no librcl.so to judge


@pytest.mark.ros
def test_a_ros_command_under_a_middleware_the_wheels_lack_stops_with_the_reason():
    # rcl ended such a process at `import rclpy` with status 102 and "found rmw_fastrtps_cpp"
    env = dict(os.environ, RMW_IMPLEMENTATION='rmw_cyclonedds_cpp')
    if rmw_problem(env) is None:
        pytest.skip('not the PyPI wheels (a native install loads the middleware named, or no '
                    'librcl.so on LD_LIBRARY_PATH): rcl judges RMW_IMPLEMENTATION itself')
    for argv in (['-m', 'mmp_ros', 'run', '--help'], ['-m', 'mmp_ros.ros.dropout_node']):
        done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith('mmp_ros: cannot start ROS 2: RMW_IMPLEMENTATION='
                                      'rmw_cyclonedds_cpp, but'), done.stderr


def test_opting_out_removes_every_profile_variable():
    env = {PROFILE_ENV: 'a.xml', LEGACY_PROFILE_ENV: 'b.xml'}
    setup = apply_dds_profile(env, profile=False)
    assert env == {RMW_ENV: DEFAULT_RMW}
    assert setup.profile_file is None and 'no profile' in setup.describe()


def test_profile_uses_a_32mib_segment_and_keeps_udp_on_loopback():
    root = ET.parse(PROFILE_PATH).getroot()
    descriptors = {
        d.findtext('f:transport_id', namespaces=NS): d
        for d in root.iterfind('f:profiles/f:transport_descriptors/f:transport_descriptor', NS)
    }
    kinds = {tid: d.findtext('f:type', namespaces=NS) for tid, d in descriptors.items()}
    assert sorted(kinds.values()) == ['SHM', 'UDPv4']
    shm = next(d for d in descriptors.values() if d.findtext('f:type', namespaces=NS) == 'SHM')
    assert int(shm.findtext('f:segment_size', namespaces=NS)) == 32 * 1024 * 1024
    udp = next(d for d in descriptors.values() if d.findtext('f:type', namespaces=NS) == 'UDPv4')
    allowed = [i.get('name') for i in udp.iterfind('f:interfaces/f:allowlist/f:interface', NS)]
    assert allowed == ['127.0.0.1']
    participant = root.find('f:profiles/f:participant', NS)
    assert participant.get('is_default_profile') == 'true'
    rtps = participant.find('f:rtps', NS)
    assert rtps.findtext('f:useBuiltinTransports', namespaces=NS) == 'false'
    used = [t.text for t in rtps.iterfind('f:userTransports/f:transport_id', NS)]
    assert sorted(used) == sorted(descriptors)


# A child process: our start-up, one node; prints the sizes of the shared-memory segments
# that appeared meanwhile. Fast DDS logs XML errors on stderr.
_CHILD = """
import os, sys
from mmp_ros.ros.context import init_ros
import rclpy
before = set(os.listdir('/dev/shm'))
with init_ros([]) as setup:
    node = rclpy.create_node('mmp_ros_profile_probe')
    new = set(os.listdir('/dev/shm')) - before
    print(max(os.path.getsize('/dev/shm/' + name) for name in new))
    node.destroy_node()
"""


def _probe(env_update: dict[str, str]) -> subprocess.CompletedProcess:
    env = repo_env()
    env.pop(PROFILE_ENV, None)
    env.pop(LEGACY_PROFILE_ENV, None)
    env.update(env_update)
    return subprocess.run(
        [sys.executable, '-c', _CHILD], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )


@pytest.mark.ros
def test_fast_dds_loads_the_profile_and_maps_the_large_segment():
    result = _probe({})
    assert 'XMLPARSER' not in result.stderr, result.stderr
    assert int(result.stdout.split()[-1]) >= 32 * 1024 * 1024


@pytest.mark.ros
def test_probe_sees_a_profile_that_fast_dds_rejects(tmp_path):
    # The check above can fail: a misspelt element is reported and the segment stays small.
    broken = tmp_path / 'broken.xml'
    broken.write_text(PROFILE_PATH.read_text().replace('segment_size>', 'segmentsize>'))
    result = _probe({PROFILE_ENV: str(broken)})
    assert 'XMLPARSER' in result.stderr
    assert int(result.stdout.split()[-1]) < 32 * 1024 * 1024


# A child: our start-up, one reliable publisher; once matched, one small message, then whether
# and in how many seconds the other process acknowledged it.
_ACK_CHILD = """
import time
import rclpy
from rclpy.duration import Duration
from rclpy.qos import QoSProfile
from std_msgs.msg import UInt32
from mmp_ros.ros.context import init_ros, spin_until
with init_ros([]):
    node = rclpy.create_node('mmp_ros_ack_probe')
    publisher = node.create_publisher(UInt32, '/mmp_ros_ack_probe', QoSProfile(depth=10))
    assert spin_until(node, lambda: publisher.get_subscription_count() > 0, 20.0)
    time.sleep(0.2)  # the subscriber matches back
    publisher.publish(UInt32(data=7))
    start = time.monotonic()
    acked = publisher.wait_for_all_acked(Duration(seconds=5))
    print(acked, time.monotonic() - start, flush=True)
    node.destroy_node()
"""


@pytest.mark.ros
def test_a_reliable_message_to_another_process_is_acknowledged_within_a_second():
    # Fast DDS's default heartbeat period (3 s) made wait_for_all_acked take 2.5-3 s after a
    # few small messages, though the reader had them (mmp_ros replay's drain, the tests).
    import rclpy
    from rclpy.qos import QoSProfile
    from std_msgs.msg import UInt32

    from mmp_ros.ros.context import init_ros, spin_until

    got = []
    with init_ros([]):
        node = rclpy.create_node('mmp_ros_ack_reader')
        try:
            node.create_subscription(UInt32, '/mmp_ros_ack_probe', got.append,
                                     QoSProfile(depth=10))
            env = repo_env()
            with subprocess.Popen([sys.executable, '-c', _ACK_CHILD], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) as child:
                try:
                    assert spin_until(node, lambda: got, 20.0), 'nothing arrived'
                    out, err = child.communicate(timeout=30)
                finally:
                    if child.poll() is None:
                        child.kill()
        finally:
            node.destroy_node()
    assert child.returncode == 0, err
    acked, seconds = out.split()
    assert [m.data for m in got] == [7]
    assert acked == 'True' and float(seconds) < 1.0, out


@pytest.mark.ros
@pytest.mark.slow
def test_two_processes_deliver_99_percent_of_640x480_frames_with_the_profile(monkeypatch):
    from mmp_ros.ros.bench_dds import measure

    monkeypatch.setenv('PYTHONPATH', repo_env()['PYTHONPATH'])  # the children import mmp_ros
    result = measure(profile=True, duration_s=5.0, rate_hz=30.0)
    assert result.sent == 150
    assert result.delivery >= 0.99, result


def _fake_segment(shm_dir: Path, name: str, age_s: float) -> Path:
    (shm_dir / name).write_bytes(b'segment')
    lock = shm_dir / f'{name}_el'
    lock.touch()
    os.utime(lock, (1000.0 - age_s, 1000.0 - age_s))
    return lock


def test_removes_only_segments_whose_owner_is_gone(tmp_path):
    dead = _fake_segment(tmp_path, 'fastdds_00000000000000aa', age_s=60)
    alive = _fake_segment(tmp_path, 'fastdds_00000000000000bb', age_s=60)
    starting = _fake_segment(tmp_path, 'fastdds_00000000000000cc', age_s=STALE_AFTER_S / 2)
    (tmp_path / 'fastdds_port7000_el').touch()  # ports: Fast DDS reuses them itself
    with open(alive, 'ab') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_stale_shm_segments(tmp_path, now=1000.0) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'fastdds_00000000000000bb', 'fastdds_00000000000000bb_el',
        'fastdds_00000000000000cc', 'fastdds_00000000000000cc_el', 'fastdds_port7000_el',
    ]
    assert not dead.exists() and alive.exists() and starting.exists()


# A participant that stays up until its stdin closes; prints the segment it maps.
_LIVE_CHILD = """
import sys
from mmp_ros.ros.context import init_ros
import rclpy
with init_ros([]):
    node = rclpy.create_node('mmp_ros_segment_owner')
    maps = open('/proc/self/maps').read().split()
    print(next(w for w in maps if w.startswith('/dev/shm/fastdds_') and len(w) == 33), flush=True)
    sys.stdin.read()
    node.destroy_node()
"""


@pytest.mark.ros
def test_a_killed_participants_segment_is_removed_and_a_live_ones_kept():
    env = repo_env()
    with subprocess.Popen(
        [sys.executable, '-c', _LIVE_CHILD], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    ) as child:
        segment = Path(child.stdout.readline().strip())
        lock = segment.with_name(segment.name + '_el')
        os.utime(lock, (0, 0))  # old enough to be judged
        remove_stale_shm_segments()
        assert segment.exists() and lock.exists()  # its owner holds the lock
        child.kill()
    remove_stale_shm_segments()
    assert not segment.exists() and not lock.exists()


def test_processes_reserving_a_domain_at_once_get_different_ones(tmp_path):
    # Each test session, demo and benchmark picked random.randint(1, 100): two started at once
    # could pick the same domain and hear each other's nodes (cross-talk was seen in CI).
    env = repo_env()

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, '-c', RESERVE, str(tmp_path)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    first, second = start(), start()  # at once
    try:
        assert {first.stdout.readline().strip(), second.stdout.readline().strip()} == {'7', '8'}
        third = start()
        message = third.communicate('', timeout=30)[0]
        assert message.startswith('all 2 ROS domains mmp_ros picks from are held by other '
                                  'processes'), message
        first.communicate('', timeout=30)  # its end releases its domain
        fourth = start()
        taken = fourth.stdout.readline().strip()
        fourth.communicate('', timeout=30)
        assert taken in ('7', '8')
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.communicate('', timeout=30)


def test_a_domain_the_user_set_is_kept_and_the_range_is_fast_ddss_portable_one(tmp_path):
    from mmp_ros.dds import OWN_DOMAINS

    env = {'ROS_DOMAIN_ID': '42'}
    assert reserve_domain_id(env, lock_dir=tmp_path) == '42' and not list(tmp_path.iterdir())
    assert set(OWN_DOMAINS) == {*range(1, 102), *range(215, 233)}
    # this session's own, held by it unless set by the user: another process cannot take it
    domain = int(os.environ['ROS_DOMAIN_ID'])
    from mmp_ros import dds

    if domain in dds._reserved:
        held = subprocess.run(
            [sys.executable, '-c', RESERVE.replace('(7, 8)', f'({domain},)'),
             tempfile.gettempdir()], env=repo_env(), input='',
            capture_output=True, text=True, timeout=30)
        assert held.stdout.startswith('all 1 ROS domains'), held.stdout
