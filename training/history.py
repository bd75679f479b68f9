"""The record of a run: a CSV log appended step by step, and loss / mIoU curves as PNG."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmp_ros.atomic import replace_atomically

FIELDS = ('step', 'loss', 'ce', 'alignment', 'lr', 'seconds', 'val_full_miou',
          'val_mean_missing_miou')
FILES = ('log.csv', 'loss.png', 'miou.png')  # what a History writes into its folder


class History:
    """Rows of :data:`FIELDS`; appends to ``log.csv`` so a resumed run continues the file.

    ``seconds`` counts on over a resumed run's parts: :attr:`seconds_before` is where the
    kept rows left it, for the resumed part to add its own time to.
    """

    def __init__(self, out_dir: str | Path, *, resume_step: int = 0) -> None:
        self.path = Path(out_dir) / 'log.csv'
        self.rows: list[dict[str, float]] = []
        if resume_step and self.path.is_file():
            # a log saved again by a spreadsheet starts with a byte-order mark, which made its
            # first column '\ufeffstep' and every row one without a step, dropped
            with self.path.open(newline='', encoding='utf-8-sig') as handle:
                for row in csv.DictReader(handle):
                    # '1e+06' in older logs; a line cut short (a crash, a power cut while it was
                    # appended) has None for its missing fields and is kept with NaN there
                    if _number(row.get('step')) <= resume_step:  # NaN: no step, dropped
                        self.rows.append({k: _number(row.get(k)) for k in FIELDS})
        # the seconds of the last kept row (0 without one): a resumed part's clock starts there
        self.seconds_before = next((r['seconds'] for r in reversed(self.rows)
                                    if not math.isnan(r['seconds'])), 0.0)
        # rewritten (drops rows past resume) whole or not at all: a run stopped while it was
        # written in place left the log empty or cut short, its rows lost to the next resume
        replace_atomically(self.path, self._write_rows)

    def _write_rows(self, path: Path) -> None:
        with path.open('w', newline='') as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            for row in self.rows:
                writer.writerow(_row(row))

    def append(self, values: Mapping[str, Any]) -> None:
        row = {k: float(values.get(k, math.nan)) for k in FIELDS}
        self.rows.append(row)
        with self.path.open('a', newline='') as handle:
            csv.DictWriter(handle, fieldnames=FIELDS).writerow(_row(row))

    def plot(self) -> list[Path]:
        """``loss.png`` and ``miou.png`` beside the CSV."""
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        written = []
        steps = [r['step'] for r in self.rows if not math.isnan(r['loss'])]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key in ('loss', 'ce', 'alignment'):
            points = [(r['step'], r[key]) for r in self.rows if not math.isnan(r[key])]
            if points:
                ax.plot(*zip(*points, strict=True), label=key)
        ax.set_xlabel('step')
        ax.set_ylabel('loss')
        ax.set_yscale('log' if steps else 'linear')
        written.append(self._save(fig, ax, 'loss.png'))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, name in (('val_full_miou', 'all modalities'),
                          ('val_mean_missing_miou', 'mean over missing subsets')):
            points = [(r['step'], r[key]) for r in self.rows if not math.isnan(r[key])]
            if points:
                ax.plot(*zip(*points, strict=True), marker='o', label=name)
        ax.set_xlabel('step')
        ax.set_ylabel('validation mIoU (%)')
        written.append(self._save(fig, ax, 'miou.png'))
        return written

    def _save(self, fig, ax, name: str) -> Path:
        """Legend, grid, and the PNG beside the CSV log."""
        import matplotlib.pyplot as plt

        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.path.with_name(name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # None: a field missing from a line cut short
        return math.nan


def _row(row: Mapping[str, float]) -> dict[str, str]:
    """The values as text: 6 significant digits, the step whole (not 1e+06 nor 1.23457e+06)."""
    return {k: ('' if math.isnan(v) else f'{v:.0f}' if k == 'step' else f'{v:.6g}')
            for k, v in row.items()}
