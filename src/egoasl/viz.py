"""Timeline plots of MQ detections and NLQ answer windows (matplotlib, the ``plot`` extra; PNG)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from egoasl.metrics.plots import pyplot, save_figure


def plot_timeline(
    path: str | Path,
    predictions: list[dict],
    duration: float,
    ground_truth: list[dict] | None = None,
    top_classes: int = 5,
    per_class: int = 5,
    title: str = "",
) -> Path:
    """One row per class (the ``top_classes`` with the highest-scoring prediction).

    ``predictions`` and ``ground_truth`` are ``{label, segment: [s, e], score?}`` dicts in
    seconds; each class row shows its ``per_class`` best predictions, shaded by score,
    with the ground truth drawn as outlined bars on the same row.
    """
    by_class: dict[str, list[dict]] = defaultdict(list)
    for pred in predictions:
        by_class[pred["label"]].append(pred)
    ranked = sorted(by_class, key=lambda c: -max(p["score"] for p in by_class[c]))[:top_classes]
    gt_by_class: dict[str, list[dict]] = defaultdict(list)
    for inst in ground_truth or []:
        gt_by_class[inst["label"]].append(inst)
    classes = ranked + [c for c in gt_by_class if c not in ranked][: max(0, top_classes - len(ranked))]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 0.7 * max(len(classes), 1) + 1.2))
    cmap = plt.get_cmap("viridis")
    for row, label in enumerate(classes):
        preds = sorted(by_class.get(label, []), key=lambda p: -p["score"])[:per_class]
        for pred in reversed(preds):
            start, end = pred["segment"]
            ax.barh(row, end - start, left=start, height=0.5, color=cmap(pred["score"]), alpha=0.85)
        for inst in gt_by_class.get(label, []):
            start, end = inst["segment"]
            ax.barh(row, end - start, left=start, height=0.75, fill=False, edgecolor="crimson", linewidth=1.5)
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels([c if len(c) <= 40 else c[:37] + "..." for c in classes], fontsize=8)
    ax.set_xlim(0, duration)
    ax.set_ylim(-0.7, len(classes) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("clip time (s)")
    legend = "bars: predictions (colour = score)" + ("; red outlines: ground truth" if ground_truth else "")
    ax.set_title(f"{title}\n{legend}" if title else legend, fontsize=9)
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1)), ax=ax, label="score", pad=0.01)
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
