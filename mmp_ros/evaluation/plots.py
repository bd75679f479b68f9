"""PNG figures of a run report (matplotlib, Agg: no display needed).

Input images in the strip are decoded by the node's own decoders (``mmp_ros.sensors``) and
drawn by its overlay's ``visualize``, with the node's default decoder settings, so the strip
shows what the node saw, the way the node draws it.
"""

from __future__ import annotations

import colorsys
import math
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from mmp_ros.bags.messages import deserialize_camera_image, deserialize_image
from mmp_ros.bags.source import camera_topic, open_bag
from mmp_ros.core.parameters import decoder_settings, defaults
from mmp_ros.core.postprocess import colorize, palette_array, visualize
from mmp_ros.evaluation.analysis import (
    TRUTH_TOLERANCE_NS,
    Evaluation,
    Phase,
    UsableTimeline,
    modality_set,
)
from mmp_ros.evaluation.run import DEFAULT_TOPICS, RunTopics
from mmp_ros.modalities import MODALITIES
from mmp_ros.sensors import SensorInputError, decode_frame
from mmp_ros.sensors.image import image_to_array

STATE_COLORS = {
    'OK': '#2e9e44', 'RECOVERING': '#f0a030', 'DISABLED': '#9a9a9a', 'NEVER_SEEN': '#5a5a5a',
    'STALE': '#d62728', 'FROZEN': '#9b1c9b', 'INVALID': '#8c2d04',
}
INPUT_WINDOW_NS = 300_000_000  # an input older than this at a moment: the sensor was silent
FAULT_COLOR = '#d62728'


def _shade_faults(ax, ev: Evaluation) -> None:
    for phase in ev.phases:
        if phase.faults:
            ax.axvspan(ev.seconds(phase.start_ns), ev.seconds(phase.end_ns), color=FAULT_COLOR,
                       alpha=0.08 + 0.06 * len(phase.faults), lw=0)


def timeline(ev: Evaluation, path: Path) -> None:
    """Per-frame mIoU on top, each sensor's state below, fault windows shaded."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 5), sharex=True, gridspec_kw={'height_ratios': [2, 1.4]})
    if ev.frame_miou:
        t = [ev.seconds(s) for s, _ in ev.frame_miou]
        top.plot(t, [m for _, m in ev.frame_miou], '.', ms=2.5, color='#1f77b4')
    _shade_faults(top, ev)
    for phase in ev.phases:
        if phase.faults:
            top.text((ev.seconds(phase.start_ns) + ev.seconds(phase.end_ns)) / 2, 1.0,
                     phase.name.replace(' + ', '\n+ '), transform=top.get_xaxis_transform(),
                     ha='center', va='bottom', fontsize=7)
    top.set_ylabel('frame mIoU %')
    top.set_ylim(0, 100)
    end = max(ev.seconds(ev.phases[-1].end_ns), 1.0) if ev.phases else 1.0
    for row, sensor in enumerate(MODALITIES):
        entries = ev.timeline.get(sensor, [])
        for i, (stamp, state, _level) in enumerate(entries):
            start = ev.seconds(stamp)
            stop = ev.seconds(entries[i + 1][0]) if i + 1 < len(entries) else end
            bottom.broken_barh([(start, max(stop - start, 1e-3))], (row - 0.4, 0.8),
                               color=STATE_COLORS.get(state, '#000000'))
    for d in ev.detections:
        if d.detected_ns is not None:
            bottom.plot(ev.seconds(d.detected_ns), MODALITIES.index(d.fault.sensor), 'kv', ms=4)
    _shade_faults(bottom, ev)
    bottom.set_yticks(range(len(MODALITIES)), MODALITIES)
    bottom.set_ylim(-0.6, len(MODALITIES) - 0.4)
    bottom.invert_yaxis()
    bottom.set_xlabel('seconds after the dropout simulator started')
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STATE_COLORS.values()]
    bottom.legend(handles, list(STATE_COLORS), ncol=len(STATE_COLORS), fontsize=7,
                  loc='upper center', bbox_to_anchor=(0.5, -0.35), frameon=False)
    bottom.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(ev: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = ev.latency_ms
    if values.size:
        ax.hist(values, bins=min(60, max(10, values.size // 20)), color='#1f77b4')
        for q, style in ((50, '-'), (95, '--')):
            v = float(np.percentile(values, q))
            ax.axvline(v, color='k', ls=style, lw=1, label=f'p{q} {v:.1f} ms')
        ax.legend(fontsize=8)
    ax.set_xlabel('labels received - anchor stamp (ms)')
    ax.set_ylabel('label images')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PHASE_ROW_INCHES = 0.17  # one phase's row at font size 8


def phases(ev: Evaluation, path: Path) -> None:
    fig = phases_figure(ev)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def phases_figure(ev: Evaluation):
    """mIoU per phase, one bar a row, as tall as its rows need; a phase without a scored label
    image has no bar, and says so (a bar of 0 read as a mIoU of 0)."""
    height = max(3.4, PHASE_ROW_INCHES * len(ev.phases) + 1.0)
    fig, ax = plt.subplots(figsize=(8, height))
    for row, phase in enumerate(ev.phases):
        sc = ev.per_phase[phase.number].scores
        if sc is None or math.isnan(sc.miou):
            ax.text(1, row, 'no label image scored', va='center', fontsize=7, color='#5a5a5a')
        else:
            ax.barh(row, sc.miou, color=FAULT_COLOR if phase.faults else '#2e9e44')
    ax.set_yticks(range(len(ev.phases)), [f'{p.number}: {p.name}' for p in ev.phases],
                  fontsize=8)
    if ev.phases:
        ax.set_ylim(len(ev.phases) - 0.5, -0.5)  # the first phase on top
    ax.set_xlim(0, 100)
    ax.set_xlabel('mIoU %')
    fig.tight_layout()
    return fig


def _palette(ev: Evaluation) -> np.ndarray:
    info = ev.run.label_info or {}
    if info.get('palette'):
        return palette_array(info['palette'])
    colors = [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((k * 0.618) % 1.0, 0.65, 0.95))
              for k in range(ev.num_classes)]
    return palette_array(colors)


def _strip_frames(ev: Evaluation, anchors: Sequence[int], topics: RunTopics):
    """For each anchor label stamp: the node's inputs (newest received before the label,
    within INPUT_WINDOW_NS; an input recorded through image_transport, on
    ``<input>/compressed`` or ``<input>/compressedDepth``, as its message type and bytes)
    and the overlay published with that stamp."""
    received = {f.stamp_ns: f.received_ns for f in ev.run.labels}
    found: dict[tuple[str, int], object] = {}
    wanted_overlay = set(anchors)
    with open_bag(ev.run.path) as bag:
        inputs = {camera_topic(bag.topics, topics.inputs.format(modality=m)): m
                  for m in MODALITIES}
        names = [t for t in (*inputs, topics.overlay) if t in bag.topics]
        deadlines = sorted((received[a], a) for a in anchors)
        keys = [d for d, _ in deadlines]
        for topic, stamp_received, data in bag.messages(names):
            if topic == topics.overlay:
                image = deserialize_image(data, where=f'{bag.path}: {topic}')
                if image.stamp_ns in wanted_overlay:
                    found[('overlay', image.stamp_ns)] = image
                continue
            i = bisect_left(keys, stamp_received)
            for deadline, anchor in deadlines[i:]:
                if deadline - stamp_received > INPUT_WINDOW_NS:
                    break
                found[(inputs[topic], anchor)] = (bag.topics[topic].msgtype, data)
    return found


def _panel(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if image is None:
        return np.full((*shape, 3), 40, dtype=np.uint8)
    if image.shape[:2] != shape:
        import cv2

        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    return image


def _representative_label(ev: Evaluation, phase: Phase) -> int:
    """The stamp of a label image typical of ``phase``: among those inferred on the phase's
    most common modality set, the one nearest the middle of their time span."""
    usable = UsableTimeline(ev.run.statuses)
    inside = [f for f in ev.run.labels if phase.start_ns <= f.stamp_ns < phase.end_ns]
    if not inside:  # a phase without output: the nearest label image after its start
        later = [f for f in ev.run.labels if f.stamp_ns >= phase.start_ns]
        return (later or ev.run.labels[-1:])[0].stamp_ns
    common = ev.per_phase[phase.number].modality_sets.most_common(1)
    if common:
        typical = [f for f in inside
                   if modality_set(usable.at(f.received_ns) or ()) == common[0][0]]
        inside = typical or inside
    middle = (inside[0].stamp_ns + inside[-1].stamp_ns) // 2
    return min(inside, key=lambda f: abs(f.stamp_ns - middle)).stamp_ns


def strip(ev: Evaluation, moments: Sequence[Phase], path: Path,
          topics: RunTopics = DEFAULT_TOPICS) -> None:
    """One row per chosen phase (its middle): the four inputs as received, ground truth,
    labels, overlay."""
    anchors = [_representative_label(ev, phase) for phase in moments]
    frames = _strip_frames(ev, anchors, topics)
    palette = _palette(ev)
    values = defaults()
    settings = {m: decoder_settings(values, m) for m in MODALITIES}
    by_stamp = {f.stamp_ns: k for k, f in enumerate(ev.run.labels)}
    truths = {a: ev.run.truth_index_near(a, TRUTH_TOLERANCE_NS) for a in anchors}
    images = ev.run.images_at([by_stamp[a] for a in anchors],
                              [i for i in truths.values() if i is not None])
    columns = [*MODALITIES, 'ground truth', 'labels', 'overlay']
    fig, axes = plt.subplots(len(anchors), len(columns),
                             figsize=(1.6 * len(columns), 1.35 * len(anchors) + 0.4),
                             squeeze=False)
    for row, (phase, anchor) in enumerate(zip(moments, anchors, strict=True)):
        label = images['labels', by_stamp[anchor]]
        shape = label.shape
        truth = None if truths[anchor] is None else images['truth', truths[anchor]]
        cells = []
        for m in MODALITIES:
            recorded = frames.get((m, anchor))
            picture, note = None, 'no signal'
            if recorded is not None:
                try:
                    image = deserialize_camera_image(recorded[1], recorded[0])
                    picture = visualize(decode_frame(m, image.fields, settings[m]))
                    note = ''
                except SensorInputError as exc:
                    note = f'undecodable: {exc}'[:30]
            cells.append((_panel(picture, shape), note))
        cells.append((_panel(None if truth is None else colorize(truth, palette), shape), ''))
        cells.append((colorize(label, palette), ''))
        overlay_image = frames.get(('overlay', anchor))
        cells.append((_panel(None if overlay_image is None else
                             np.array(image_to_array(overlay_image.fields)), shape),
                      '' if overlay_image is not None else 'not recorded'))
        for col, (picture, note) in enumerate(cells):
            ax = axes[row][col]
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if note:
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha='center', va='center',
                        color='white', fontsize=7)
            if row == 0:
                ax.set_title(columns[col], fontsize=8)
        axes[row][0].set_ylabel(f'{ev.seconds(anchor):.1f} s\n{phase.name}'.replace(
            ' + ', '\n+ '), fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=90, pil_kwargs={'optimize': True})  # README-sized
    plt.close(fig)
