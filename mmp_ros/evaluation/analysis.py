"""What a recorded run says: accuracy per dropout phase and per modality set, latency, how
fast each fault was detected, and each sensor's state over time. Pure: works on
:class:`~mmp_ros.evaluation.run.RunData`, no ROS, no plotting.

Clocks. The dropout simulator stamps its events with its ROS clock (``ros_time``), the node
its labels with the anchor frame's stamp (the player's publish time with ``--restamp``) and
its diagnostics with its own clock, and the recorder's bag timestamps are its receive times.
On one machine these are all the system clock, so they are compared directly.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.messages import Status
from mmp_ros.core.health import HealthConfig, status_node
from mmp_ros.core.metrics import Scores, confusion_matrix, scores
from mmp_ros.evaluation.run import RunData
from mmp_ros.modalities import MODALITIES

# The segmentation node names its statuses '<node>: <component>' (diagnostic_updater's
# convention; <node> is its name, 'mmp_segmentation' by default, 'mmp_ros' in earlier runs).
# Its sensor statuses, '<node>: <modality>' holding these values, are what tells its statuses
# from other nodes'.
SENSOR_VALUES = ('state', 'masked')
ERROR = 2
TRUTH_TOLERANCE_NS = 25_000_000  # a label's nearest ground truth: within one 30 Hz frame
SIMULTANEOUS_NS = 20_000_000  # fault boundaries this close were scheduled together
JUMP_TOLERANCE_NS = 1_000_000  # ros_time - elapsed_s further below time 0: the clock went back
CUT_FRACTION = 0.05  # a ground-truth image this different from the previous: a scene cut
# Faults the node can only notice by silence, and those it sees in one frame's pixels.
SILENT_KINDS = ('kill', 'drop', 'delay')
FRAME_KINDS = ('blank', 'nan', 'truncate', 'encoding', 'resize', 'noise')


@dataclass(frozen=True)
class Fault:
    index: int
    sensor: str
    kind: str
    start_ns: int
    end_ns: int | None  # None: still open when the run ended

    @property
    def label(self) -> str:
        return f'{self.sensor} {self.kind}'


@dataclass(frozen=True)
class Phase:
    """A stretch of the run with one set of open faults."""

    number: int
    start_ns: int
    end_ns: int
    faults: tuple[str, ...]  # 'sensor kind', sorted; empty: clean

    @property
    def name(self) -> str:
        return ' + '.join(self.faults) if self.faults else 'clean'


@dataclass
class Accuracy:
    frames: int = 0
    confusion: np.ndarray | None = None
    modality_sets: Counter = field(default_factory=Counter)

    def add(self, matrix: np.ndarray, modalities: str) -> None:
        """Count one frame, given its confusion matrix (computed once, added everywhere)."""
        self.confusion = matrix if self.confusion is None else self.confusion + matrix
        self.frames += 1
        self.modality_sets[modalities] += 1

    @property
    def scores(self) -> Scores | None:
        return None if self.confusion is None else scores(self.confusion)


@dataclass(frozen=True)
class Detection:
    fault: Fault
    detected_ns: int | None  # first ERROR / masked status after the start
    state: str  # the sensor's state in that status
    recovered_ns: int | None  # first unmasked status after the end
    bound_s: float | None  # what the node's health settings promise
    # The sensor's last status before the start was already at ERROR or masked (a window
    # right after another of the same sensor): no detection to time; ``state`` is that one's.
    already_masked: bool = False
    # When the node had received what its settings need to notice the fault, by the detecting
    # status's own ``age_s``: the arrival of the last frame it had judged (for a bad or frozen
    # frame, the one that decided), ``timeout_s`` after it for silence. None without one.
    input_ns: int | None = None

    @property
    def detection_s(self) -> float | None:
        return None if self.detected_ns is None else (self.detected_ns - self.fault.start_ns) / 1e9

    @property
    def input_s(self) -> float | None:
        return None if self.input_ns is None else (self.input_ns - self.fault.start_ns) / 1e9

    @property
    def allowed_s(self) -> float | None:
        """``bound_s``, or later where the node's input came later than the bound says (a
        source, simulator or transport behind time on a loaded machine: frames the node had
        not been sent yet cannot be judged; nor, to count a freeze, frames its queue dropped
        while it was starved of CPU): when it had what it needed."""
        if self.bound_s is None:
            return None
        return self.bound_s if self.input_s is None else max(self.bound_s, self.input_s)

    @property
    def recovery_s(self) -> float | None:
        if self.recovered_ns is None or self.fault.end_ns is None:
            return None
        return (self.recovered_ns - self.fault.end_ns) / 1e9


@dataclass
class Evaluation:
    run: RunData
    origin_ns: int  # the dropout simulator's start (time 0 of the schedule)
    faults: list[Fault]
    phases: list[Phase]
    per_phase: dict[int, Accuracy]
    per_modality_set: dict[str, Accuracy]
    overall: Accuracy
    frame_miou: list[tuple[int, float]]  # (anchor stamp, that frame's mIoU %)
    latency_ms: np.ndarray
    detections: list[Detection]
    timeline: dict[str, list[tuple[int, str, int]]]  # sensor -> (stamp, state, level)
    unmatched_labels: int  # not scored: no ground truth near, or one of another size
    num_classes: int
    class_names: tuple[str, ...]
    # Label images anchored within ``settle_ns`` after a scene cut, left out of the phase and
    # modality-set figures (see :func:`evaluate`); none when ``settle_ns`` is 0.
    after_cut: Accuracy = field(default_factory=Accuracy)
    settle_ns: int = 0
    scene_cuts: int = 0
    # Of the unmatched: (label shape, ground-truth shape) -> label images with a ground truth
    # near their stamp but of another size (the node's output at another resolution).
    other_size: Counter = field(default_factory=Counter)
    # Scored label images anchored before the simulator's start: in no phase (the node and
    # the recorder ran before the simulator did).
    before_schedule: int = 0

    def seconds(self, stamp_ns: int) -> float:
        """A stamp as seconds after the dropout simulator started."""
        return (stamp_ns - self.origin_ns) / 1e9


def faults_from_events(events: Sequence[Mapping]) -> tuple[int, list[Fault]]:
    """(time 0 of the schedule, the fault windows as they were applied) from the events."""
    schedule = [e for e in events if e.get('event') == 'schedule']
    if not schedule:
        raise BagError('dropout/events holds no "schedule" event: the simulator\'s start was '
                       'not recorded')
    origin_ns = _event_field(schedule[0], 'ros_time', _seconds_to_ns)
    others = sorted({_event_field(e, 'ros_time', _seconds_to_ns) for e in schedule} - {origin_ns})
    if others:  # the same document twice (recorded twice) is one start
        raise BagError(f'dropout/events holds {len(others) + 1} "schedule" events (ros_time '
                       f'{", ".join(f"{t / 1e9:.3f}" for t in [origin_ns, *others])}): the '
                       'simulator was started more than once during the recording, and the '
                       'fault indexes of its runs collide; record one simulator run per bag')
    starts: dict[int, Mapping] = {}
    ends: dict[int, int] = {}
    for event in events:
        kind = event.get('event')
        if kind in ('start', 'end') and 'elapsed_s' in event:
            _check_no_jump_back(event, origin_ns)
        if kind == 'start':
            starts[_event_field(event, 'index', int)] = event
        elif kind == 'end':
            ends[_event_field(event, 'index', int)] = _event_field(event, 'ros_time',
                                                                    _seconds_to_ns)
    faults = [
        Fault(i, _event_field(e, 'sensor', str), _event_field(e, 'kind', str),
              _event_field(e, 'ros_time', _seconds_to_ns), ends.get(i))
        for i, e in sorted(starts.items())
    ]
    # A window whose start is missing would be scored as clean; one that ends before it
    # starts was timed on a clock that went back.
    for index, end_ns in sorted(ends.items()):
        if index not in starts:
            raise BagError(f'dropout/events: fault {index} ends at {end_ns / 1e9:.3f} s '
                           '(ros_time) but its start event was not recorded: the timeline is '
                           'incomplete, and its window would be scored as clean')
    for fault in faults:
        if fault.end_ns is not None and fault.end_ns < fault.start_ns:
            raise BagError(f'dropout/events: fault {fault.index} ({fault.label}) ends at '
                           f'{fault.end_ns / 1e9:.3f} s (ros_time), before it starts at '
                           f'{fault.start_ns / 1e9:.3f} s: the simulator\'s clock went back '
                           '(a looping replay with --clock?), so the run cannot be scored')
    return origin_ns, faults


def _check_no_jump_back(event: Mapping, origin_ns: int) -> None:
    """BagError where the simulator's clock had gone back by the time of ``event``.

    ``ros_time`` and ``elapsed_s`` are one reading of the simulator's clock, so ``ros_time -
    elapsed_s`` is time 0 of the schedule while its clock runs on. When the clock jumps back
    (``mmp_ros replay --loop --clock`` starting the bag over) the schedule goes on counting
    but ``ros_time``, the node's stamps and the ground truth's start over: the passes' fault
    windows, statuses and label images overlap in time and cannot be told apart, and every
    figure would mix them (a phase of two faults that never met, a detection in another pass).
    """
    ros_ns = _event_field(event, 'ros_time', _seconds_to_ns)
    back_ns = origin_ns + _event_field(event, 'elapsed_s', _seconds_to_ns) - ros_ns
    if back_ns > JUMP_TOLERANCE_NS:
        raise BagError(
            f'dropout/events: the simulator\'s clock had gone back {back_ns / 1e9:.3f} s by '
            f'event {event.get("event")!r} of fault {event.get("index")!r} (ros_time '
            f'{ros_ns / 1e9:.3f}, {event["elapsed_s"]} s into the schedule): a looping replay '
            'with --clock starts the stamps over (as does a system clock stepped back), so its '
            'passes overlap in time and cannot be scored; record one pass, or loop with '
            '--restamp instead of --clock')


def _seconds_to_ns(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f'not a finite number of seconds: {value!r}')
    return round(value * 1e9)


def _event_field(event: Mapping, key: str, convert):
    """``convert(event[key])``; BagError naming the event where it is missing or invalid (a
    damaged recording, or one not written by the dropout simulator)."""
    try:
        return convert(event[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise BagError(f'dropout/events: event {event.get("event")!r} without a valid '
                       f'{key!r} ({json.dumps(event)[:200]})') from exc


def sensor_status_node(status: Status) -> str | None:
    """The node whose sensor status ``status`` is: named '<node>: <modality>', with
    :data:`SENSOR_VALUES` among its values, as the segmentation node writes it; None for any
    other status."""
    node, sep, component = status.name.partition(': ')
    if sep and component in MODALITIES and all(k in status.values for k in SENSOR_VALUES):
        return node
    return None


def of_node(run: RunData, node: str | None = None, namespace: str | None = None) -> RunData:
    """``run`` with the statuses of segmentation node ``node`` alone, each named by its
    component ('rgb', 'model'). ``node`` None: the one node whose sensor statuses
    (:func:`sensor_status_node`) the run holds, if any, else the one it holds in
    ``namespace`` ('/robot1' or 'robot1', as the launch file takes it). Outside the root
    namespace a node's statuses begin with its fully qualified name (:func:`status_node`):
    ``node`` is found in ``namespace``, or with ``namespace`` None in the one namespace that
    has a node so named (or a fully qualified name itself); runs recorded by earlier versions
    name it alone.

    BagError where ``node`` is None and the run holds sensor statuses of several nodes (two
    robots recorded together) or only of nodes outside ``namespace``, or ``node`` is none of
    those it holds, or several.
    """
    found = sorted({n for s in run.statuses if (n := sensor_status_node(s)) is not None})
    topic = run.names.diagnostics
    if namespace is not None:
        namespace = '/' + namespace.strip('/')
    if node is None and namespace is not None and found:
        inside = [f for f in found if f.rpartition('/')[0] == namespace.rstrip('/')]
        if not inside and all(f.startswith('/') for f in found):  # each in another namespace
            raise BagError(f'--namespace {namespace}: {topic} holds no sensor status of a '
                           f'segmentation node in it (those of {", ".join(found)})')
        node = inside[0] if len(inside) == 1 else None
    if node is not None:
        named = [f for f in found if f == status_node(node, namespace or '/')] or [
            f for f in found if f == node or (namespace is None and f.endswith(f'/{node}'))]
        if len(named) > 1:
            raise BagError(f'--node {node}: {topic} holds the statuses of nodes of that name '
                           f'in several namespaces ({", ".join(named)}): give --namespace')
        node = named[0] if named else node
    if node is None and len(found) > 1:
        raise BagError(f'{topic} holds the statuses of {len(found)} segmentation nodes '
                       f'({", ".join(found)}): name the one to evaluate with --node NAME')
    if node is not None and node not in found:
        held = f'those of {", ".join(found)}' if found else 'none of any'
        raise BagError(f'--node {node}: {topic} holds no sensor status of a segmentation node '
                       f'named so ({held}); its statuses are named "{node}: <modality>", '
                       f'in a namespace "/<namespace>/{node}: <modality>"')
    notes = run.notes
    if node is None and found:
        node = found[0]
    elif node is None and run.statuses:
        notes = [*notes, f'{topic} holds no sensor status of the segmentation node ("<node>: '
                 f'<modality>" with values {" and ".join(SENSOR_VALUES)}): no fault could be '
                 'seen detected, and the modalities each label image used are unknown']
    prefix = f'{node}: '
    statuses = [replace(s, name=s.name[len(prefix):]) for s in run.statuses
                if node is not None and s.name.startswith(prefix)]
    return replace(run, statuses=statuses, notes=notes, node=node)


def phases_of(faults: Sequence[Fault], origin_ns: int, end_ns: int,
              merge_ns: int = SIMULTANEOUS_NS) -> list[Phase]:
    """The run cut at every fault boundary; each piece named by the faults open in it.

    Boundaries closer than ``merge_ns`` to the previous one are one boundary: faults that
    a schedule starts (or ends) together are applied microseconds apart, and must not leave
    a phase too short to hold a frame.
    """
    bounds: list[int] = []
    for bound in sorted({origin_ns, end_ns, *(f.start_ns for f in faults),
                         *(f.end_ns for f in faults if f.end_ns is not None)}):
        if origin_ns <= bound <= end_ns and (not bounds or bound - bounds[-1] >= merge_ns):
            bounds.append(bound)
    if len(bounds) > 1 and bounds[-1] != end_ns:
        bounds[-1] = end_ns
    phases: list[Phase] = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        middle = (start + end) // 2  # a merged boundary's faults are all open by then
        open_faults = tuple(sorted(
            f.label for f in faults
            if f.start_ns <= middle and (f.end_ns is None or f.end_ns > middle)
        ))
        if phases and phases[-1].faults == open_faults:
            phases[-1] = Phase(phases[-1].number, phases[-1].start_ns, end, open_faults)
        else:
            phases.append(Phase(len(phases), start, end, open_faults))
    return phases


def modality_set(usable: Sequence[str]) -> str:
    ordered = [m for m in MODALITIES if m in usable]
    return 'all' if len(ordered) == len(MODALITIES) else ('+'.join(ordered) or 'none')


class UsableTimeline:
    """Which sensors the node reported usable (``masked: false``) at any time; ``statuses``:
    one node's, named by component (:func:`of_node`)."""

    def __init__(self, statuses: Sequence[Status]) -> None:
        self._stamps: list[int] = []
        self._sets: list[frozenset[str]] = []
        usable: dict[str, bool] = {}
        for status in statuses:
            sensor = status.name
            if sensor not in MODALITIES or 'masked' not in status.values:
                continue
            usable[sensor] = status.values['masked'] == 'false'
            current = frozenset(m for m, ok in usable.items() if ok)
            if self._stamps and self._stamps[-1] == status.stamp_ns:
                self._sets[-1] = current
            else:
                self._stamps.append(status.stamp_ns)
                self._sets.append(current)

    def at(self, stamp_ns: int) -> frozenset[str] | None:
        i = bisect_right(self._stamps, stamp_ns) - 1
        return self._sets[i] if i >= 0 else None


def detection_bound_s(kind: str, health: HealthConfig | None) -> float | None:
    """How long the node's health settings allow it to take to notice a fault of ``kind``.

    Silence (kill, drop, delay) is noticed after ``timeout_s``; a frozen stream after
    ``frozen_frames`` frames at the expected rate; a bad frame (blank, NaN, torn, ...) at the
    next frame, one expected period. None where no promise exists (no settings, no rate).
    """
    if health is None:
        return None
    if kind in SILENT_KINDS:
        return health.timeout_s
    if not health.expected_rate_hz > 0:  # a frozen stream keeps arriving: no timeout fires
        return None
    period = 1.0 / health.expected_rate_hz
    if kind == 'freeze':
        return health.frozen_frames * period
    if kind in FRAME_KINDS:
        return period
    return None


def _flagged(status: Status) -> bool:
    return status.level >= ERROR or status.values.get('masked') == 'true'


def detections_of(faults: Sequence[Fault], statuses: Sequence[Status],
                  health: Mapping[str, HealthConfig]) -> list[Detection]:
    """For each fault: the first status of its sensor at ERROR or masked after the fault
    began, and the first unmasked one after it ended. A sensor already at ERROR or masked
    when the fault began (still down from the window before) gives no detection time.
    ``statuses``: one node's, named by component (:func:`of_node`)."""
    by_sensor: dict[str, list[Status]] = {}
    for status in statuses:
        by_sensor.setdefault(status.name, []).append(status)
    result = []
    for fault in faults:
        own = by_sensor.get(fault.sensor, [])
        before = [s for s in own if s.stamp_ns <= fault.start_ns]
        already = bool(before) and _flagged(before[-1])
        hit = next((s for s in own if s.stamp_ns > fault.start_ns and _flagged(s)), None)
        if hit is not None and fault.end_ns is not None and hit.stamp_ns > fault.end_ns:
            hit = None  # noticed only after the window: not a detection of this fault
        if already:
            hit = None
        recovered = None
        if fault.end_ns is not None:
            recovered = next((s.stamp_ns for s in own if s.stamp_ns > fault.end_ns
                              and s.values.get('masked') == 'false'), None)
        state = before[-1] if already else hit
        bound = detection_bound_s(fault.kind, health.get(fault.sensor))
        result.append(Detection(
            fault, None if hit is None else hit.stamp_ns,
            '' if state is None else state.values.get('state', ''), recovered,
            bound, already, None if hit is None else _input_ns(fault.kind, hit, bound),
        ))
    return result


def _input_ns(kind: str, status: Status, bound_s: float | None) -> int | None:
    """:attr:`Detection.input_ns` from the detecting ``status``: its stamp less its
    ``age_s`` (the time since the sensor's last arrival), plus ``bound_s`` (``timeout_s``) for
    silence. None where it carries no age."""
    try:
        age_s = float(status.values['age_s'])
    except (KeyError, ValueError):
        return None
    if not math.isfinite(age_s) or age_s < 0:
        return None
    arrival_ns = status.stamp_ns - round(age_s * 1e9)
    if kind in SILENT_KINDS:
        return None if bound_s is None else arrival_ns + round(bound_s * 1e9)
    return arrival_ns


def status_timeline(statuses: Sequence[Status]) -> dict[str, list[tuple[int, str, int]]]:
    """Per sensor, each change of state or level: (stamp, state, level); ``statuses``: one
    node's, named by component (:func:`of_node`)."""
    timeline: dict[str, list[tuple[int, str, int]]] = {m: [] for m in MODALITIES}
    for status in statuses:
        sensor = status.name
        if sensor not in timeline:
            continue
        entry = (status.stamp_ns, status.values.get('state', '?'), status.level)
        if not timeline[sensor] or timeline[sensor][-1][1:] != entry[1:]:
            timeline[sensor].append(entry)
    return timeline


def scene_cuts(truth: Sequence[np.ndarray], stamps: Sequence[int],
               fraction: float = CUT_FRACTION) -> list[int]:
    """Stamps of the ground-truth images that differ from the previous one in more than
    ``fraction`` of the pixels labelled in either: where the view changed at once."""
    return [stamp for previous, current, stamp in zip(truth, truth[1:], stamps[1:], strict=False)
            if _is_cut(previous, current, fraction)]


def _is_cut(previous: np.ndarray, current: np.ndarray, fraction: float) -> bool:
    if previous.shape != current.shape:
        return True
    labelled = (previous != 255) | (current != 255)
    changed = np.count_nonzero((previous != current) & labelled)
    return changed > fraction * max(1, np.count_nonzero(labelled))


# A label image scored: its confusion matrix; or not: (its shape, its ground truth's) where
# that is of another size, None where it has no ground truth near.
Outcome = np.ndarray | tuple[tuple[int, ...], tuple[int, ...]] | None


def _outcomes(run: RunData, matches: Sequence[int | None], num_classes: int,
              cuts: list[int] | None) -> Iterator[tuple[int, Outcome]]:
    """(index in ``run.labels``, outcome) of every label image, in that order, from one pass
    over ``run.images()``; label image k is scored against ground truth ``matches[k]``.

    The images may arrive in any order (a label image before its ground truth). A label image
    is held until its ground truth arrives, a ground truth until its label images and (with
    ``cuts``) its neighbours in stamp order have arrived, an outcome until those before it
    are known: with images in arrival order, a few. ``cuts``: filled with the stamps of the
    scene cuts (:func:`scene_cuts`) in order; when an outcome is yielded it holds every cut
    up to its ground truth's stamp.
    """
    stamps = run.truth_stamps
    needed = [0] * len(stamps)  # uses of each ground truth still to come
    for i in matches:
        if i is not None:
            needed[i] += 1
    if cuts is not None:
        for i in range(len(stamps)):
            needed[i] += (i > 0) + (i + 1 < len(stamps))
    compared = [True] + [cuts is None] * (len(stamps) - 1)  # i: with i - 1
    known = 0  # every comparison up to ground truth ``known`` made: its cuts are in ``cuts``
    truth: dict[int, np.ndarray] = {}
    waiting: dict[int, list[tuple[int, np.ndarray]]] = {}  # label images before their truth
    outcomes: dict[int, Outcome] = {}
    turn = 0

    def used(i: int) -> None:
        needed[i] -= 1
        if not needed[i]:
            del truth[i]

    for kind, index, image in run.images():
        if kind == 'labels':
            i = matches[index]
            if i is None:
                outcomes[index] = None
            elif i in truth:
                outcomes[index] = _outcome(image, truth[i], num_classes)
                used(i)
            else:
                waiting.setdefault(i, []).append((index, image))
        else:
            i = index
            if needed[i]:
                truth[i] = image
            for k, labels in waiting.pop(i, ()):
                outcomes[k] = _outcome(labels, image, num_classes)
                used(i)
            if cuts is not None:
                for j in (i - 1, i + 1):
                    if j in truth and i in truth and not compared[max(i, j)]:
                        low, high = min(i, j), max(i, j)
                        if _is_cut(truth[low], truth[high], CUT_FRACTION):
                            insort(cuts, stamps[high])
                        compared[high] = True
                        used(j)
                        used(i)
                while known + 1 < len(stamps) and compared[known + 1]:
                    known += 1
        while turn in outcomes:
            i = matches[turn]
            if cuts is not None and i is not None and known < bisect_right(stamps, stamps[i]) - 1:
                break
            yield turn, outcomes.pop(turn)
            turn += 1
    if turn != len(run.labels):
        raise BagError(f'{run.names.labels}: label image {turn} of {len(run.labels)} not '
                       'found on reading the bag again: it changed while it was read')


def _outcome(labels: np.ndarray, truth: np.ndarray, num_classes: int) -> Outcome:
    if truth.shape != labels.shape:
        return labels.shape, truth.shape
    return confusion_matrix(labels, truth, num_classes)


def evaluate(run: RunData, health: Mapping[str, HealthConfig] | None = None,
             truth_tolerance_ns: int = TRUTH_TOLERANCE_NS, settle_ns: int = 0,
             node: str | None = None, namespace: str | None = None) -> Evaluation:
    """Score every published label image against the ground truth nearest its stamp.

    The statuses read are those of the segmentation node ``node`` in ``namespace``
    (:func:`of_node`: by default the only one in the run); the evaluation's ``run`` holds
    them alone.

    Each label image counts in the phase its anchor stamp falls in, and in the modality set
    the node's last /diagnostics before it arrived declared usable (the node publishes
    diagnostics at once when that set changes). A modality reported usable may still be
    absent from a bundle whose frame of it was older than ``max_age_s``; at the demo's rates
    that is rare.

    ``settle_ns`` > 0 sets apart the label images whose ground truth comes less than that
    after a scene cut (:func:`scene_cuts`): a synthetic recording jumps from one scene to the
    next, and until the slowest camera has sent a frame of the new scene the node fuses two
    different scenes, which no real rig does. They still count in the overall figure and are
    reported on their own (``after_cut``).
    """
    run = of_node(run, node, namespace)
    origin_ns, faults = faults_from_events(run.events)
    end_ns = max(max(f.received_ns for f in run.labels), run.truth_stamps[-1],
                 run.statuses[-1].stamp_ns if run.statuses else 0)
    phases = phases_of(faults, origin_ns, end_ns)
    starts = [p.start_ns for p in phases]
    names = tuple(run.label_info.get('class_names', ())) if run.label_info else ()
    num_classes = max(len(names), run.truth_highest + 1)
    usable = UsableTimeline(run.statuses)
    per_phase = {p.number: Accuracy() for p in phases}
    per_set: dict[str, Accuracy] = {}
    overall = Accuracy()
    after_cut = Accuracy()
    cuts: list[int] | None = [] if settle_ns > 0 else None
    matches = [run.truth_index_near(f.stamp_ns, truth_tolerance_ns) for f in run.labels]
    frame_miou = []
    unmatched = 0
    before_schedule = 0
    other_size: Counter = Counter()
    for k, outcome in _outcomes(run, matches, num_classes, cuts):
        frame = run.labels[k]
        if not isinstance(outcome, np.ndarray):
            unmatched += 1
            if outcome is not None:
                other_size[outcome] += 1
            continue
        used = usable.at(frame.received_ns)
        key = 'unknown' if used is None else modality_set(used)
        matrix = outcome
        overall.add(matrix, key)
        frame_miou.append((frame.stamp_ns, scores(matrix).miou))
        stamp = run.truth_stamps[matches[k]]
        cut = bisect_right(cuts, stamp) - 1 if cuts else -1
        if cut >= 0 and stamp - cuts[cut] < settle_ns:
            after_cut.add(matrix, key)
            continue
        per_set.setdefault(key, Accuracy()).add(matrix, key)
        i = bisect_right(starts, frame.stamp_ns) - 1
        if i >= 0:
            per_phase[phases[i].number].add(matrix, key)
        else:
            before_schedule += 1
    latency = np.array([(f.received_ns - f.stamp_ns) / 1e6 for f in run.labels])
    return Evaluation(
        run=run, origin_ns=origin_ns, faults=faults, phases=phases, per_phase=per_phase,
        per_modality_set=per_set, overall=overall, frame_miou=frame_miou, latency_ms=latency,
        detections=detections_of(faults, run.statuses, health or {}),
        timeline=status_timeline(run.statuses), unmatched_labels=unmatched,
        num_classes=num_classes,
        class_names=names or tuple(f'class {k}' for k in range(num_classes)),
        after_cut=after_cut, settle_ns=settle_ns, scene_cuts=len(cuts or ()),
        other_size=other_size,
        before_schedule=before_schedule,
    )


def percentiles(values: np.ndarray, qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    if not values.size:
        return [math.nan] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]
