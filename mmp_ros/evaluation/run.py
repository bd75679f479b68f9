"""Read a recorded run (``mmp_ros record``) into what the evaluation needs, without ROS.

A run bag holds the node's ``segmentation/labels``, ``/diagnostics``, the dropout
simulator's ``dropout/events`` timeline and the synthetic bag's ``/ground_truth/labels``;
optionally ``segmentation/label_info``, the overlay and the node's inputs. Each message's
bag timestamp is the recorder's receive time; header stamps are the senders'.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.messages import (
    DIAGNOSTICS_TYPE,
    IMAGE_TYPE,
    STRING_TYPE,
    Status,
    deserialize_diagnostics,
    deserialize_image,
    deserialize_string,
)
from mmp_ros.bags.source import open_bag
from mmp_ros.sensors.image import image_to_array


@dataclass(frozen=True)
class RunTopics:
    """Where each stream is in the bag (the demo's names by default)."""

    labels: str = '/segmentation/labels'
    ground_truth: str = '/ground_truth/labels'
    diagnostics: str = '/diagnostics'
    events: str = '/dropout/events'
    label_info: str = '/segmentation/label_info'
    overlay: str = '/segmentation/overlay'
    inputs: str = '/{modality}/image'  # what the node received

    def required(self) -> dict[str, str]:
        return {self.labels: IMAGE_TYPE, self.ground_truth: IMAGE_TYPE,
                self.diagnostics: DIAGNOSTICS_TYPE, self.events: STRING_TYPE}

    def in_namespace(self, namespace: str) -> RunTopics:
        """These names as nodes started in ``namespace`` (``/robot1``; ``-r __ns:=``, the
        launch file's ``namespace``) have them: all under it but ``/diagnostics``, which is
        absolute in ROS."""
        prefix = namespace.rstrip('/')
        return replace(self, **{f.name: prefix + getattr(self, f.name) for f in fields(self)
                                if f.name != 'diagnostics'})


DEFAULT_TOPICS = RunTopics()


@dataclass
class LabelFrame:
    stamp_ns: int  # header stamp: the anchor frame's
    received_ns: int  # when the recorder got it
    labels: np.ndarray  # (H, W) uint8, 255 = no prediction


@dataclass
class RunData:
    path: Path
    topics: dict[str, str]  # every topic of the bag -> its type
    labels: list[LabelFrame]
    truth_stamps: list[int]  # sorted
    truth: list[np.ndarray]  # in truth_stamps order
    # Every status of every /diagnostics message, by stamp; in an evaluation, those of the
    # node evaluated alone, named by component (analysis.of_node).
    statuses: list[Status]
    events: list[dict]  # dropout/events documents in arrival order
    label_info: dict | None = None  # the node's JSON label info, when recorded as JSON
    notes: list[str] = field(default_factory=list)  # what was skipped, and why
    names: RunTopics = DEFAULT_TOPICS  # the topics it was read from
    node: str | None = None  # the segmentation node whose statuses these are, once chosen

    def truth_index_near(self, stamp_ns: int, tolerance_ns: int) -> int | None:
        """Index of the ground truth whose stamp is nearest ``stamp_ns``, if within the
        tolerance."""
        i = bisect_left(self.truth_stamps, stamp_ns)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.truth_stamps):
                gap = abs(self.truth_stamps[j] - stamp_ns)
                if gap <= tolerance_ns and (best is None or gap < best[0]):
                    best = (gap, j)
        return None if best is None else best[1]

    def truth_near(self, stamp_ns: int, tolerance_ns: int) -> np.ndarray | None:
        """The ground truth whose stamp is nearest ``stamp_ns``, if within the tolerance."""
        index = self.truth_index_near(stamp_ns, tolerance_ns)
        return None if index is None else self.truth[index]


def _image(data: bytes, where: str) -> tuple[int, np.ndarray]:
    image = deserialize_image(data, where=where)
    if image.fields.encoding not in ('mono8', '8UC1'):
        raise BagError(f'{where}: encoding {image.fields.encoding!r}, expected mono8 labels')
    return image.stamp_ns, np.array(image_to_array(image.fields)[..., 0])


def _namespace_hint(topics: RunTopics, types: dict[str, str]) -> str:
    """Where the demo's names were looked for and the bag holds them under exactly one
    namespace: the option that reads them there."""
    if topics != DEFAULT_TOPICS:
        return ''
    suffix = DEFAULT_TOPICS.labels
    spaces = [name[:-len(suffix)] for name in types if name.endswith(suffix)]
    found = [ns for ns in spaces if ns.startswith('/')
             and all(t in types for t in DEFAULT_TOPICS.in_namespace(ns).required())]
    return f'; it holds them under {found[0]}: --namespace {found[0]}' if len(found) == 1 else ''


def read_run(path: str | Path, topics: RunTopics = DEFAULT_TOPICS) -> RunData:
    """Load the labels, ground truth, diagnostics and events of a recorded run.

    BagError (naming the file and topic) for a missing or unreadable bag, a bag without image
    topics, a required topic that is missing or recorded with another type, and a message that
    does not decode. Topics the evaluation does not use are not read, whatever their type.
    """
    with open_bag(path) as bag:
        types = {name: t.msgtype for name, t in bag.topics.items()}
        if not any(t == IMAGE_TYPE for t in types.values()):
            raise BagError(f'{bag.path}: no sensor_msgs/msg/Image topic; not a recorded run '
                           f'(topics: {", ".join(f"{n} [{t}]" for n, t in types.items())})')
        for topic, expected in topics.required().items():
            if topic not in types:
                raise BagError(f'{bag.path}: no topic {topic} ({expected}); a run must be '
                               f'recorded with it (recorded: {sorted(types)})'
                               f'{_namespace_hint(topics, types)}')
            if types[topic] != expected:
                raise BagError(f'{bag.path}: topic {topic} holds {types[topic]}, expected '
                               f'{expected}')
        run = RunData(Path(path), types, [], [], [], [], [], names=topics)
        truth: list[tuple[int, np.ndarray]] = []
        wanted = [*topics.required()]
        if types.get(topics.label_info) == STRING_TYPE:
            wanted.append(topics.label_info)
        elif topics.label_info in types:
            run.notes.append(f'{topics.label_info} is {types[topics.label_info]}, not the JSON '
                             'label info: class names and palette not read')
        for topic, received, data in bag.messages(wanted):
            where = f'{bag.path}: {topic} message at {received} ns'
            if topic == topics.labels:
                stamp, labels = _image(data, where)
                run.labels.append(LabelFrame(stamp, received, labels))
            elif topic == topics.ground_truth:
                truth.append(_image(data, where))
            elif topic == topics.diagnostics:
                run.statuses.extend(deserialize_diagnostics(data, where=where))
            elif topic == topics.events:
                try:
                    event = json.loads(deserialize_string(data, where=where))
                except json.JSONDecodeError as exc:
                    raise BagError(f'{where}: not a JSON dropout event ({exc})') from exc
                if not isinstance(event, dict):
                    raise BagError(f'{where}: not a JSON dropout event (a '
                                   f'{type(event).__name__}, not an object)')
                run.events.append(event)
            else:
                try:
                    run.label_info = json.loads(deserialize_string(data, where=where))
                except json.JSONDecodeError:
                    run.notes.append(f'{topics.label_info}: not JSON; ignored')
    truth.sort(key=lambda item: item[0])
    run.truth_stamps = [s for s, _ in truth]
    run.truth = [t for _, t in truth]
    run.statuses.sort(key=lambda s: s.stamp_ns)
    if not run.statuses:
        run.notes.append(f'{topics.diagnostics} holds no message: no fault could be seen '
                         'detected, and the modalities each label image used are unknown')
    if not run.labels:
        raise BagError(f'{path}: {topics.labels} holds no message: the node published nothing')
    if not run.truth:
        raise BagError(f'{path}: {topics.ground_truth} holds no message')
    return run
