"""The report of a recorded run: Markdown, a simple HTML page, JSON, and PNG plots.

``evaluate_run`` reads and scores a run bag; ``write_report`` writes ``report.md``,
``report.html``, ``report.json``, ``timeline.png`` (per-frame mIoU and each sensor's state
over time, fault windows shaded), ``latency.png``, ``phases.png`` and ``strip.png`` (inputs
as the node received them, ground truth, labels and overlay at a few moments of the run).
"""

from __future__ import annotations

import html
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmp_ros import json_text
from mmp_ros.atomic import replace_atomically
from mmp_ros.bags.errors import BagError
from mmp_ros.core.health import HealthConfig
from mmp_ros.core.parameters import (
    NODE_NAME,
    ParameterError,
    defaults,
    health_config,
    load_params_file,
)
from mmp_ros.evaluation.analysis import (
    TRUTH_TOLERANCE_NS,
    Evaluation,
    Phase,
    evaluate,
    of_node,
    percentiles,
)
from mmp_ros.evaluation.run import DEFAULT_TOPICS, RunTopics, read_run
from mmp_ros.modalities import MODALITIES


def node_health(params_files: Sequence[str | Path], node: str = NODE_NAME,
                namespace: str | None = None) -> dict[str, HealthConfig]:
    """Each sensor's health settings as node ``node`` in ``namespace`` (None: any) ran with
    these parameter files (in order, later files overriding earlier ones, over the node's
    defaults)."""
    values = defaults()
    for path in params_files:
        values.update(load_params_file(path, node, option='--params', namespace=namespace))
    return {m: health_config(values, m) for m in MODALITIES}


@dataclass
class RunReport:
    evaluation: Evaluation

    def _fmt(self, value: float | None, digits: int = 1, scale: float = 1.0) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return '—'
        return f'{value * scale:.{digits}f}'

    def phase_rows(self) -> list[list[str]]:
        ev = self.evaluation
        rows = []
        for phase in ev.phases:
            acc = ev.per_phase[phase.number]
            sc = acc.scores
            sets = ', '.join(f'{k} ({n})' for k, n in acc.modality_sets.most_common())
            rows.append([
                str(phase.number), phase.name,
                f'{ev.seconds(phase.start_ns):.1f}–{ev.seconds(phase.end_ns):.1f}',
                str(acc.frames), self._fmt(sc.miou if sc else None),
                self._fmt(sc.pixel_accuracy if sc else None), sets or '—',
            ])
        return rows

    def modality_rows(self) -> list[list[str]]:
        ev = self.evaluation
        rows = []
        for key, acc in sorted(ev.per_modality_set.items(), key=lambda kv: -kv[1].frames):
            sc = acc.scores
            rows.append([key, str(acc.frames), self._fmt(sc.miou), self._fmt(sc.pixel_accuracy)])
        return rows

    def detection_rows(self) -> list[list[str]]:
        rows = []
        for d in self.evaluation.detections:
            f = d.fault
            window = (f'{self.evaluation.seconds(f.start_ns):.2f}–'
                      + (f'{self.evaluation.seconds(f.end_ns):.2f}' if f.end_ns else 'end'))
            within = '—'
            if d.allowed_s is not None and d.detection_s is not None:
                within = 'yes' if d.detection_s <= d.allowed_s + 0.1 else 'NO'
                if d.allowed_s > d.bound_s:  # the input came late: say from when it counts
                    within += f' (input at {self._fmt(d.allowed_s, 0, 1e3)} ms)'
            detected = ('already masked' if d.already_masked else 'not detected'
                        if d.detection_s is None else self._fmt(d.detection_s, 0, 1e3))
            rows.append([
                f'{f.index}', f.label, window, detected,
                d.state or '—', self._fmt(d.bound_s, 0, 1e3), within,
                self._fmt(d.recovery_s, 0, 1e3),
            ])
        return rows

    def latency_row(self) -> list[str]:
        lat = self.evaluation.latency_ms
        p50, p95, p99 = percentiles(lat)
        return [str(lat.size), f'{p50:.1f}', f'{p95:.1f}', f'{p99:.1f}',
                f'{lat.max():.1f}' if lat.size else '—']

    def cut_note(self) -> str:
        """What the phase figures leave out (``settle_s``, label images before the simulator's
        start), or nothing."""
        ev = self.evaluation
        before = (f'{ev.before_schedule} scored label images stamped before the dropout '
                  'simulator started (time 0) are in no phase; they count in the overall and '
                  'modality-set figures' if ev.before_schedule else '')
        if not ev.settle_ns:
            return before
        sc = ev.after_cut.scores
        cut = (f'{ev.after_cut.frames} label images within {ev.settle_ns / 1e6:.0f} ms after '
               f'one of {ev.scene_cuts} scene cuts (the node fused two scenes) are left out '
               f'of the phase and modality-set figures; their mIoU '
               f'{self._fmt(sc.miou if sc else None)} %, counted in the overall figure')
        return f'{before}; {cut}' if before else cut

    def unscored_note(self) -> str:
        """Why label images were not scored, or nothing."""
        ev = self.evaluation
        if not ev.unmatched_labels:
            return ''
        resized = sum(ev.other_size.values())
        parts = []
        if ev.unmatched_labels > resized:
            parts.append(f'{ev.unmatched_labels - resized} without a ground truth within '
                         f'{TRUTH_TOLERANCE_NS / 1e6:.0f} ms of their stamp')
        if resized:
            sizes = ', '.join(f'labels {lab[0]}x{lab[1]} against ground truth {gt[0]}x{gt[1]}'
                              f' ({n})' for (lab, gt), n in ev.other_size.most_common())
            parts.append(f'{resized} of another size than their ground truth ({sizes})')
        return f'not scored: {"; ".join(parts)}'

    def summary_table(self) -> str:
        """A plain-text summary for the terminal."""
        ev = self.evaluation
        overall = ev.overall.scores
        lines = [f'run {ev.run.path}: {len(ev.run.labels)} label images, '
                 f'{ev.overall.frames} scored, mIoU {self._fmt(overall.miou if overall else None)}'
                 f' %']
        if unscored := self.unscored_note():
            lines.append(unscored)
        lines += _text_table(['#', 'phase', 't (s)', 'frames', 'mIoU %', 'acc %', 'modalities'],
                             self.phase_rows())
        note = self.cut_note()
        if note:
            lines.append(note)
        lines.append('')
        lines += _text_table(['#', 'fault', 'window (s)', 'detected (ms)', 'as', 'bound (ms)',
                              'in bound+100ms', 'recovered (ms)'], self.detection_rows())
        lines.append('')
        lines += _text_table(['labels', 'latency p50 ms', 'p95', 'p99', 'max'],
                             [self.latency_row()])
        lines += [f'note: {n}' for n in ev.run.notes]
        return '\n'.join(lines)

    def to_dict(self) -> dict:
        ev = self.evaluation

        def sc(acc):  # the same keys with no frame scored: null figures, 0 frames
            s = acc.scores
            return {'miou': None if s is None else s.miou,
                    'pixel_accuracy': None if s is None else s.pixel_accuracy,
                    'frames': acc.frames}

        p50, p95, p99 = percentiles(ev.latency_ms)
        return {
            'bag': str(ev.run.path),
            'node': ev.run.node,
            'labels': len(ev.run.labels), 'scored': ev.overall.frames,
            'unmatched_labels': ev.unmatched_labels,
            'other_size_labels': [{'labels': list(lab), 'ground_truth': list(gt), 'count': n}
                                  for (lab, gt), n in ev.other_size.most_common()],
            'overall': sc(ev.overall),
            'phases': [{'number': p.number, 'name': p.name, 'start_s': ev.seconds(p.start_ns),
                        'end_s': ev.seconds(p.end_ns), **sc(ev.per_phase[p.number]),
                        'modality_sets': dict(ev.per_phase[p.number].modality_sets)}
                       for p in ev.phases],
            'modality_sets': {k: sc(a) for k, a in ev.per_modality_set.items()},
            'latency_ms': {'count': int(ev.latency_ms.size), 'p50': p50, 'p95': p95, 'p99': p99,
                           'max': float(ev.latency_ms.max()) if ev.latency_ms.size else None},
            'detections': [{'index': d.fault.index, 'sensor': d.fault.sensor,
                            'kind': d.fault.kind, 'start_s': ev.seconds(d.fault.start_ns),
                            'end_s': (ev.seconds(d.fault.end_ns)
                                      if d.fault.end_ns is not None else None),
                            'detection_s': d.detection_s, 'state': d.state,
                            'already_masked': d.already_masked,
                            'bound_s': d.bound_s, 'input_s': d.input_s,
                            'allowed_s': d.allowed_s, 'recovery_s': d.recovery_s}
                           for d in ev.detections],
            'before_schedule_labels': ev.before_schedule,
            'after_scene_cut': {'settle_s': ev.settle_ns / 1e9, 'scene_cuts': ev.scene_cuts,
                                **sc(ev.after_cut)},
            'notes': ev.run.notes,
        }


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    fmt = '  '.join(f'{{:<{w}}}' for w in widths)
    return [fmt.format(*header), fmt.format(*('-' * w for w in widths))] + [
        fmt.format(*row) for row in rows]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in row) + '</tr>'
                   for row in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def evaluate_run(path: str | Path, *, node_params: Sequence[str | Path] = (),
                 topics: RunTopics = DEFAULT_TOPICS,
                 settle_s: float | str = 0.0, node: str | None = None,
                 namespace: str | None = None) -> RunReport:
    """Read and score the run bag at ``path``; ``node_params``: the node's parameter files,
    for the detection bounds; ``settle_s``: set apart the label images this soon after a
    scene cut (:func:`~mmp_ros.evaluation.analysis.evaluate`), ``'auto'`` for
    :func:`settle_after_cut_s` of those parameters; ``node``: the segmentation node whose
    statuses to read (:func:`~mmp_ros.evaluation.analysis.of_node`; None: the only one);
    ``namespace``: the node's (None: any). The sections of the parameter files read are those
    ROS applies to ``node`` (None: the node found, else ``mmp_segmentation``) in
    ``namespace``, or in the namespace of a fully qualified ``node`` ('/robot1/mmp_front')."""
    run = read_run(path, topics)
    try:
        # the node found where none is named: its sections give the bounds, not the default's
        name, node_namespace = node or of_node(run, None, namespace).node or NODE_NAME, namespace
        if name.startswith('/'):
            node_namespace, _, name = name.rpartition('/')
            node_namespace = node_namespace or '/'
        health = node_health(node_params, name, node_namespace)
        if settle_s == 'auto':
            settle_s = settle_after_cut_s(health)
        return RunReport(evaluate(run, health, settle_ns=round(settle_s * 1e9), node=node,
                                  namespace=namespace))
    except BagError as exc:  # the fault timeline's: name the bag, as read_run's errors do
        raise BagError(f'{path}: {exc}') from exc


def settle_after_cut_s(health: Mapping[str, HealthConfig]) -> float:
    """How long after a scene cut the node may still fuse a frame of the previous scene: one
    period of the slowest camera it expects, plus 5 ms of stamp jitter.

    ParameterError where a sensor's ``expected_rate_hz`` is 0 (the rate check off): its
    period is unknown, and it may be the slowest."""
    unknown = sorted(m for m, h in health.items() if not h.expected_rate_hz > 0)
    if unknown:
        raise ParameterError(
            f'--settle-after-cut auto: expected_rate_hz of {", ".join(unknown)} is 0 (rate '
            'check off), so the slowest camera\'s period is unknown; give it in seconds')
    return max(1.0 / h.expected_rate_hz for h in health.values()) + 0.005


STRIP_PHASES = 5  # the image strip shows at most this many phases

SECTIONS = (
    ('Accuracy per dropout phase', ['#', 'phase', 't (s)', 'frames', 'mIoU %', 'pixel acc %',
                                    'modalities used (frames)'], 'phase_rows'),
    ('Accuracy per available-modality set', ['modalities', 'frames', 'mIoU %', 'pixel acc %'],
     'modality_rows'),
    ('Fault detection', ['#', 'fault', 'window (s)', 'detected after (ms)', 'state',
                         'bound (ms)', 'within bound + 100 ms', 'unmasked after end (ms)'],
     'detection_rows'),
    ('Latency (label receipt - anchor stamp)', ['labels', 'p50 ms', 'p95 ms', 'p99 ms',
                                                 'max ms'], None),
)

EXPLANATION = (
    'Times are seconds after the dropout simulator started (time 0 of its schedule). Each '
    'label image is scored against the ground truth nearest its header stamp (within 25 ms), '
    'counted in the phase its stamp falls in, and in the modality set the node\'s last '
    '/diagnostics before it declared usable. mIoU is over the classes present in the '
    'prediction or the ground truth of the frames pooled; "no prediction" (255) counts as a '
    'miss. Detection: from the fault\'s start event to the first /diagnostics status of that '
    'sensor at ERROR or masked ("already masked": it was so at the start, still down from '
    'the window before); the bound follows from the node\'s health settings (silence: '
    'timeout_s; freeze: frozen_frames at the expected rate; a bad frame: one expected '
    'period). Unmasked after end: from the end event to the first status with the sensor '
    'usable again (it includes recovery_frames good frames).'
)


def write_report(report: RunReport, out: str | Path, *, strip: str | Path | None = None) -> Path:
    """Write the report into folder ``out``; returns the Markdown file's path. ``strip``:
    also save the image strip there (e.g. docs/img/demo_strip.png).

    The files are written into ``out/.report.partial`` and moved into ``out`` once all of them
    are there: a report stopped half way (Ctrl-C, an error) leaves ``out`` as it was, not
    new plots beside an earlier run's ``report.md``; a folder it created is removed again.
    """
    out = Path(out)
    created = not out.exists()
    partial = out / '.report.partial'
    try:
        if partial.exists():  # left by a process killed outright
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        _write_report_files(report, partial)
        for name in sorted(p.name for p in partial.iterdir()):
            os.replace(partial / name, out / name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    partial.rmdir()
    if strip is not None:
        replace_atomically(strip, lambda path: shutil.copyfile(out / 'strip.png', path))
    return out / 'report.md'


def _write_report_files(report: RunReport, out: Path) -> None:
    from mmp_ros.evaluation import plots

    ev = report.evaluation
    plots.timeline(ev, out / 'timeline.png')
    plots.latency(ev, out / 'latency.png')
    plots.phases(ev, out / 'phases.png')
    moments = strip_moments(ev.phases, STRIP_PHASES)
    plots.strip(ev, moments, out / 'strip.png', ev.run.names)
    # NaN (a phase whose ground truth holds no class) is no JSON: null instead.
    (out / 'report.json').write_text(
        json_text.dumps(report.to_dict(), indent=2) + '\n')

    overall = ev.overall.scores
    md = [f'# Run report: `{ev.run.path}`', '',
          f'{len(ev.run.labels)} label images, {ev.overall.frames} scored against ground truth'
          f'{f" ({report.unscored_note()})" if ev.unmatched_labels else ""}, overall mIoU '
          f'{report._fmt(overall.miou if overall else None)} %, '
          f'{len(ev.faults)} faults injected.', '', EXPLANATION, '']
    body = []
    for title, header, rows_name in SECTIONS:
        rows = getattr(report, rows_name)() if rows_name else [report.latency_row()]
        note = report.cut_note() if rows_name == 'phase_rows' else ''
        md += [f'## {title}', '', _md_table(header, rows), ''] + ([note, ''] if note else [])
        body.append(f'<h2>{html.escape(title)}</h2>{_html_table(header, rows)}'
                    + (f'<p>{html.escape(note)}</p>' if note else ''))
    images = [('Per-frame mIoU and sensor states', 'timeline.png'),
              ('mIoU per phase', 'phases.png'), ('Latency', 'latency.png'),
              ('Inputs, ground truth, labels and overlay', 'strip.png')]
    for title, name in images:
        md += [f'## {title}', '', f'![{title}]({name})', '']
        body.append(f'<h2>{html.escape(title)}</h2><img src="{name}" alt="{title}">')
    if ev.run.notes:
        md += ['## Notes', ''] + [f'- {n}' for n in ev.run.notes] + ['']
    (out / 'report.md').write_text('\n'.join(md))
    style = ('body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:'
             'collapse}td,th{border:1px solid #bbb;padding:2px 8px}img{max-width:100%}')
    (out / 'report.html').write_text(
        f'<!doctype html><html><head><meta charset="utf-8"><title>Run report</title>'
        f'<style>{style}</style></head><body><h1>Run report</h1><p>{html.escape(md[2])}</p>'
        f'<p>{html.escape(EXPLANATION)}</p>{"".join(body)}</body></html>\n')


def strip_moments(phases: Sequence[Phase], count: int) -> list[Phase]:
    """Phases to show in the strip: the first clean one, faults (the one with most sensors
    always among them), and the last clean one; at most ``count``."""
    faulty = [p for p in phases if p.faults]
    clean = [p for p in phases if not p.faults]
    chosen: list[Phase] = []
    if clean:
        chosen.append(clean[0])
    room = max(0, count - len(chosen) - (1 if len(clean) > 1 else 0))
    if faulty and room:
        most = max(faulty, key=lambda p: (len(p.faults), p.number))
        picks = [faulty[round(i * (len(faulty) - 1) / max(1, room - 1))]
                 for i in range(room - 1)] if room > 1 else []
        for p in [*picks, most]:
            if p not in chosen:
                chosen.append(p)
    if len(clean) > 1:
        chosen.append(clean[-1])
    return sorted(chosen, key=lambda p: p.start_ns)[:count]
