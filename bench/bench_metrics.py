"""Benchmark of the MQ evaluator: 500 clips x 2000 predictions, 110 classes, ~9 GT per clip.

Run ``python bench/bench_metrics.py`` from the repository root. It times
:func:`egoasl.metrics.mq.evaluate_mq` end to end (mAP at 5 thresholds + Recall@{1..5}x), once
from the submission-shaped input (per-clip lists of dicts, as read from JSON) and once from
per-clip column arrays, and appends a dated section to ``bench/RESULTS.md``.
The data are synthetic with a fixed seed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from common import cpu_model

from egoasl.data.records import MQClip, MQInstance
from egoasl.metrics.mq import evaluate_mq

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = """# Benchmark results

Each run of a script in `bench/` appends a dated section below: date, machine, the command
and its figures. Timings are wall-clock seconds on the machine named in the section.
"""


def make_data(
    num_clips: int = 500, preds_per_clip: int = 2000, num_classes: int = 110, gt_per_clip: float = 9.0, seed: int = 0
) -> tuple[list[MQClip], dict[str, list[dict]], dict[str, dict[str, np.ndarray]]]:
    """Synthetic ground truth and predictions with a fixed seed.

    Ground truth: Poisson(``gt_per_clip``) instances per clip (at least 1), with about a third
    of them repeated by a second annotator (jittered), as in the real data. Predictions: a
    quarter are jittered copies of the clip's ground truth, a quarter carry the clip's ground
    truth classes at random places, the rest random classes and places; scores uniform.
    """
    rng = np.random.default_rng(seed)
    labels = [f"class_{i:03d}" for i in range(num_classes)]
    duration = 480.0
    clips: list[MQClip] = []
    as_dicts: dict[str, list[dict]] = {}
    as_arrays: dict[str, dict[str, np.ndarray]] = {}
    for c in range(num_clips):
        uid = f"clip-{c:04d}"
        n = max(1, int(rng.poisson(gt_per_clip / 1.35)))  # ~35% get a second annotator's copy
        cls = rng.integers(0, num_classes, n)
        length = np.minimum(np.exp(rng.uniform(np.log(0.6), np.log(300.0), n)), duration)
        start = rng.uniform(0.0, duration - length)
        dup = rng.random(n) < 0.35
        cls = np.concatenate([cls, cls[dup]])
        jitter = rng.normal(0.0, 0.5, (int(dup.sum()), 2))
        start = np.concatenate([start, np.clip(start[dup] + jitter[:, 0], 0, duration)])
        end = np.concatenate([start[:n] + length, np.clip(start[:n][dup] + length[dup] + jitter[:, 1], 0, duration)])
        end = np.maximum(end, start + 0.1)
        clips.append(
            MQClip(uid, f"video-{c:04d}", "val", 0.0, duration,
                   [MQInstance(labels[k], float(s), float(e)) for k, s, e in zip(cls, start, end)])
        )
        m = preds_per_clip
        q = m // 4
        src = rng.integers(0, len(cls), q)
        p_cls = np.concatenate([cls[src], cls[rng.integers(0, len(cls), q)], rng.integers(0, num_classes, m - 2 * q)])
        centre = np.concatenate([(start[src] + end[src]) / 2 + rng.normal(0, 2.0, q), rng.uniform(0, duration, m - q)])
        half = np.concatenate([(end[src] - start[src]) / 2 * rng.uniform(0.7, 1.3, q),
                               np.exp(rng.uniform(np.log(0.3), np.log(150.0), m - q))])
        p_start = np.clip(centre - half, 0.0, duration)
        p_end = np.clip(centre + half, 0.0, duration)
        score = rng.random(m)
        order = np.argsort(-score, kind="stable")
        p_cls, p_start, p_end, score = p_cls[order], p_start[order], p_end[order], score[order]
        as_dicts[uid] = [
            {"label": labels[k], "score": float(s), "segment": [float(a), float(b)]}
            for k, s, a, b in zip(p_cls, score, p_start, p_end)
        ]
        as_arrays[uid] = {
            "label": [labels[k] for k in p_cls],
            "score": score,
            "segment": np.stack([p_start, p_end], axis=1),
        }
    return clips, as_dicts, as_arrays


def best_of(repeat: int, fn) -> tuple[float, object]:
    """Best wall-clock time of ``repeat`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def machine() -> str:
    """``nproc`` and the CPU model."""
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--preds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    clips, as_dicts, as_arrays = make_data(args.clips, args.preds)
    t_gen = time.perf_counter() - t0
    n_pred = sum(len(v) for v in as_dicts.values())
    n_gt = sum(len(c.instances) for c in clips)
    t_dicts, res = best_of(args.repeat, lambda: evaluate_mq(clips, as_dicts))
    t_arrays, res2 = best_of(args.repeat, lambda: evaluate_mq(clips, as_arrays))
    assert res.average_mAP == res2.average_mAP and np.array_equal(res.recall, res2.recall)
    lines = [
        f"- data: {len(clips)} clips, {n_pred} predictions, 110 classes, {n_gt} GT instances "
        f"(generated in {t_gen:.1f} s, seed 0)",
        f"- evaluate_mq, per-clip lists of dicts (as read from a submission JSON): **{t_dicts:.3f} s** "
        f"(best of {args.repeat})",
        f"- evaluate_mq, per-clip column arrays: **{t_arrays:.3f} s** (best of {args.repeat})",
        f"- result: average mAP {100 * res.average_mAP:.2f}, R@1x@0.5 {100 * res.recall_at(1, 0.5):.2f}",
        "- reference: the evaluators used by ActionFormer and by the ASL authors take about 90 s "
        f"for this size on this machine (figure from the issue, not re-measured here): about "
        f"{90 / t_dicts:.0f}x faster from dicts, {90 / t_arrays:.0f}x from arrays",
    ]
    print("\n".join(lines))
    if not args.no_record:
        if not RESULTS.exists():
            RESULTS.write_text(HEADER)
        given = sys.argv[1:] if argv is None else argv
        command = " ".join(["python bench/bench_metrics.py", *([shlex.join(given)] if given else [])])
        section = [
            "",
            f"## {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} bench_metrics (MQ evaluator)",
            "",
            f"- machine: {machine()}; numpy {np.__version__}, Python {platform.python_version()}",
            f"- command: `{command}`",
            *lines,
            "",
        ]
        with RESULTS.open("a") as fh:
            fh.write("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
