"""Diagnostic plots of an MQ evaluation: per-class AP and precision/recall curves (PNG).

matplotlib (the ``plot`` extra) is imported lazily with the non-interactive Agg backend, so
importing the metrics never needs a display, nor matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egoasl.errors import EgoaslError
from egoasl.metrics.mq import MQResult, format_tiou


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; a clear error naming the ``plot`` extra when missing."""
    try:
        import matplotlib
    except ImportError:
        raise EgoaslError("plots need matplotlib; install the extra: pip install 'egoasl[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class_ap(result: MQResult, path: str | Path, tiou: float | None = None) -> Path:
    """Horizontal bars of AP per class (sorted, best on top), at ``tiou`` or averaged over thresholds.

    The bar label shows the number of ground-truth instances of the class.
    """
    plt = pyplot()
    if tiou is None:
        values = result.ap.mean(axis=0)
        title = "AP averaged over tIoU " + ", ".join(format_tiou(t) for t in result.tious)
    else:
        values, title = result.ap[MQResult._tiou_index(tiou, result.tious)], f"AP at tIoU {format_tiou(tiou)}"
    order = np.argsort(values, kind="stable")
    labels = [f"{result.classes[c]} ({int(result.num_gt[c])})" for c in order]
    height = max(3.0, 0.18 * len(labels) + 1.0)
    fig, ax = plt.subplots(figsize=(9, height))
    try:
        ax.barh(np.arange(len(order)), 100.0 * values[order], color="tab:blue")
        ax.set_yticks(np.arange(len(order)), labels, fontsize=6)
        ax.set_xlabel("AP (%)")
        ax.set_xlim(0, 100)
        mean = 100.0 * float(values.mean())
        ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.2f}")
        ax.set_title(title)
        ax.legend(loc="lower right")
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig`` and write it as a PNG (folders created); the caller closes it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_pr_curves(result: MQResult, path: str | Path) -> Path:
    """Pooled precision/recall curves, one per tIoU threshold (see :meth:`MQResult.pr_curve`)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    try:
        for t in result.tious:
            precision, recall = result.pr_curve(t)
            ax.plot(recall, precision, label=f"tIoU {format_tiou(t)} (mAP {100 * result.map_at(t):.1f})")
        ax.set_xlabel("recall (all classes pooled)")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("Precision / recall, detections ranked by score")
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def save_mq_plots(result: MQResult, folder: str | Path) -> list[Path]:
    """``per_class_ap.png`` and ``pr_curve.png`` in ``folder``; returns their paths."""
    folder = Path(folder)
    return [plot_per_class_ap(result, folder / "per_class_ap.png"), plot_pr_curves(result, folder / "pr_curve.png")]
