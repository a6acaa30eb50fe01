"""Training-curve plots of a run folder's ``metrics.csv`` (matplotlib, Agg).

Panels: training loss; teacher and student evaluation (kNN top-1 for
self-supervised runs, test top-1 for semi-supervised ones); teacher
smoothness, i.e. the mean squared difference of its parameters and of its
outputs on a fixed probe batch between consecutive evaluations (000 Fig. 3,
log scale); and the schedules of m, p and the learning rate.
"""

from __future__ import annotations

import csv
from pathlib import Path

PANELS = (
    ("loss", ("loss",), False),
    ("accuracy (%)", ("teacher_knn_top1", "student_knn_top1", "teacher_top1", "student_top1"), False),
    ("teacher smoothness (MSD)", ("param_msd", "output_msd"), True),
    ("schedules", ("m", "p", "lr"), False),
)


def _column(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        value = r.get(key, "")
        if value not in ("", None):
            xs.append(float(r["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> Path | None:
    """Draws the curves of ``metrics_csv`` into ``out_png``; None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(metrics_csv)
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for ax, (name, keys, log) in zip(axes, PANELS):
        for key in keys:
            xs, ys = _column(rows, key)
            if xs:
                ax.plot(xs, ys, marker="." if len(xs) < 40 else None, label=key)
        if log and ax.lines and all(y > 0 for line in ax.lines for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
