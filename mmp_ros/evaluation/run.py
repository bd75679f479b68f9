"""Read a recorded run (``mmp_ros record``) into what the evaluation needs, without ROS.

A run bag holds the node's ``segmentation/labels``, ``/diagnostics``, the dropout
simulator's ``dropout/events`` timeline and the synthetic bag's ``/ground_truth/labels``;
optionally ``segmentation/label_info``, the overlay and the node's inputs. Each message's
bag timestamp is the recorder's receive time; header stamps are the senders'.

An hour's label images and ground truth do not fit in memory: :func:`read_run` keeps the
stamps of each (and the highest class of the ground truth), and :attr:`RunData.images`
streams the images from the bag again, one at a time, for the scoring.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator
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
from mmp_ros.core.postprocess import MAX_CLASSES
from mmp_ros.metadata import is_rgb
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
    """A label image ((H, W) uint8, 255 = no prediction) as its stamps; its pixels come
    from :attr:`RunData.images`."""

    stamp_ns: int  # header stamp: the anchor frame's
    received_ns: int  # when the recorder got it


# ('labels', index in RunData.labels, image) or ('truth', index in truth_stamps, image)
Images = Iterator[tuple[str, int, np.ndarray]]


@dataclass
class RunData:
    path: Path
    topics: dict[str, str]  # every topic of the bag -> its type
    labels: list[LabelFrame]  # in arrival order
    truth_stamps: list[int]  # sorted
    truth_highest: int  # the highest class in any ground-truth image
    # Every status of every /diagnostics message, by stamp; in an evaluation, those of the
    # node evaluated alone, named by component (analysis.of_node).
    statuses: list[Status]
    events: list[dict]  # dropout/events documents in arrival order
    # Every label and ground-truth image once, in the order they arrived, each read when
    # its turn comes: a new pass over the bag at each call; images(only) yields those of
    # the set ``only`` of (kind, index), and reads no other.
    images: Callable[..., Images] = field(repr=False)
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

    def images_at(self, labels: Collection[int], truth: Collection[int]) -> dict[
        tuple[str, int], np.ndarray
    ]:
        """The label images and ground-truth images of these indexes, by ('labels', index)
        and ('truth', index): one pass over :attr:`images`."""
        only = {('labels', k) for k in labels} | {('truth', i) for i in truth}
        return {(kind, i): image for kind, i, image in self.images(only)}


def _image(data: bytes, where: str) -> tuple[int, np.ndarray]:
    image = deserialize_image(data, where=where)
    if image.fields.encoding not in ('mono8', '8UC1'):
        raise BagError(f'{where}: encoding {image.fields.encoding!r}, expected mono8 labels')
    return image.stamp_ns, np.array(image_to_array(image.fields)[..., 0])


def _highest(truth: np.ndarray) -> int:
    return int(truth[truth != 255].max(initial=0))


def _label_info_problem(info: object) -> str:
    """Why ``info`` is not the node's JSON label info, whose class names and palette the
    report reads (an object; its ``class_names``, if any, a list of strings, its ``palette``
    a list of at most 255 RGB triples of 0 to 255), or ''."""
    if not isinstance(info, dict):
        return f'{json.dumps(info)[:80]} is not a JSON object'
    names = info.get('class_names', [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f'class_names {json.dumps(names)[:80]} is not a list of names'
    palette = info.get('palette', [])
    if not (isinstance(palette, list) and len(palette) <= MAX_CLASSES
            and all(is_rgb(rgb) for rgb in palette)):
        return (f'palette {json.dumps(palette)[:80]} is not a list of at most {MAX_CLASSES} '
                'RGB triples of 0 to 255')
    return ''


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
    """Load the diagnostics and events of a recorded run, the stamps of its label and
    ground-truth images, and a way to stream the images (:attr:`RunData.images`).

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
        truth_stamps: list[int] = []  # in arrival order
        highest = 0
        run = RunData(Path(path), types, [], [], 0, [], [], lambda: iter(()),  # set below
                      names=topics)
        wanted = [*topics.required()]
        if types.get(topics.label_info) == STRING_TYPE:
            wanted.append(topics.label_info)
        elif topics.label_info in types:
            run.notes.append(f'{topics.label_info} is {types[topics.label_info]}, not the JSON '
                             'label info: class names and palette not read')
        for topic, received, data in bag.messages(wanted):
            where = f'{bag.path}: {topic} message at {received} ns'
            if topic == topics.labels:
                run.labels.append(LabelFrame(_image(data, where)[0], received))
            elif topic == topics.ground_truth:
                stamp, truth = _image(data, where)
                truth_stamps.append(stamp)
                highest = max(highest, _highest(truth))
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
                    info = json.loads(deserialize_string(data, where=where))
                except json.JSONDecodeError:
                    run.notes.append(f'{topics.label_info}: not JSON; ignored')
                    continue
                if problem := _label_info_problem(info):
                    run.notes.append(f'{topics.label_info}: {problem}; ignored')
                else:
                    run.label_info = info
    order = sorted(range(len(truth_stamps)), key=lambda j: truth_stamps[j])
    run.truth_stamps = [truth_stamps[j] for j in order]
    run.truth_highest = highest
    place = [0] * len(order)  # arrival -> stamp order
    for i, j in enumerate(order):
        place[j] = i

    def images(only: Collection[tuple[str, int]] | None = None) -> Images:
        arrived = {topics.labels: 0, topics.ground_truth: 0}
        with open_bag(path) as bag:
            for topic, received, data in bag.messages(wanted):  # in the same order
                if topic in arrived:
                    j = arrived[topic]
                    arrived[topic] += 1
                    key = ('labels', j) if topic == topics.labels else ('truth', place[j])
                    if only is None or key in only:
                        where = f'{bag.path}: {topic} message at {received} ns'
                        yield *key, _image(data, where)[1]

    run.images = images
    run.statuses.sort(key=lambda s: s.stamp_ns)
    if not run.statuses:
        run.notes.append(f'{topics.diagnostics} holds no message: no fault could be seen '
                         'detected, and the modalities each label image used are unknown')
    if not run.labels:
        raise BagError(f'{path}: {topics.labels} holds no message: the node published nothing')
    if not run.truth_stamps:
        raise BagError(f'{path}: {topics.ground_truth} holds no message')
    return run
