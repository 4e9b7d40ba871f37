"""Time :func:`egoasl.engine.nms.soft_nms` on Ego4D-sized inputs and record the figures.

Cases (segments on a 1024-cell grid, centres uniform, lengths log-uniform in [1, 256]
cells, scores uniform in (0.001, 1)):

* ``mq-5000x110``: 5000 candidates, classes uniform over 110, MQ settings (sigma 0.99,
  min_score 1e-4, max_num 2000). The release's C++ op plus its per-class Python loop takes
  11.7 ms per clip on this input size (figure given in the project brief).
* ``mq-2000x110``: the same with 2000 candidates.
* ``mq-5000x110-zipf``: 5000 candidates with Zipf class frequencies (class k with weight
  1/k), closer to real outputs where a few frequent classes dominate; the largest class
  holds ~900 candidates, so ~900 sequential steps.
* ``mq-30000x110`` and ``mq-30000x110-zipf``: release scale. With ``pre_nms_topk`` 5000 per
  level, a clip can reach ~30k candidates; with Zipf classes the largest class holds
  ~5700, so the per-class cap of 2000 sequential steps is reached.
* ``nlq-5000-agnostic``: 5000 candidates, class-agnostic, NLQ settings (sigma 0.9,
  min_score 1e-3, max_num 100).
* ``agnostic-5000-cap2000``: class-agnostic with the MQ settings (2000 sequential steps).

Run:  OMP_NUM_THREADS=1 python bench/bench_nms.py [--repeats 30] [--no-record]
Appends a dated section to bench/RESULTS.md (created with a header if missing).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from common import cpu_model

from egoasl.engine.nms import soft_nms

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def make_case(n: int, num_classes: int, zipf: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random candidates: (segments (n, 2), scores (n,), labels (n,))."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, generator=g) * 1024
    length = torch.exp(torch.rand(n, generator=g) * torch.log(torch.tensor(256.0)))
    segments = torch.stack([centre - length / 2, centre + length / 2], 1)
    scores = 0.001 + 0.999 * torch.rand(n, generator=g)
    if zipf:
        weights = 1.0 / torch.arange(1, num_classes + 1, dtype=torch.float64)
        labels = torch.multinomial(weights, n, replacement=True, generator=g)
    else:
        labels = torch.randint(0, num_classes, (n,), generator=g)
    return segments, scores, labels


CASES = {
    # name: (n, classes, zipf, multiclass, sigma, min_score, max_num)
    "mq-5000x110": (5000, 110, False, True, 0.99, 1e-4, 2000),
    "mq-2000x110": (2000, 110, False, True, 0.99, 1e-4, 2000),
    "mq-5000x110-zipf": (5000, 110, True, True, 0.99, 1e-4, 2000),
    "mq-30000x110": (30000, 110, False, True, 0.99, 1e-4, 2000),
    "mq-30000x110-zipf": (30000, 110, True, True, 0.99, 1e-4, 2000),
    "nlq-5000-agnostic": (5000, 1, False, False, 0.9, 1e-3, 100),
    "agnostic-5000-cap2000": (5000, 1, False, False, 0.99, 1e-4, 2000),
}


def time_case(name: str, repeats: int) -> dict:
    """Median, min and max wall time (ms) of one soft_nms call over ``repeats`` calls, each on a new random clip."""
    n, k, zipf, multiclass, sigma, min_score, max_num = CASES[name]
    clips = [make_case(n, k, zipf, seed) for seed in range(repeats + 1)]
    times, kept = [], []
    for i, (segs, scores, labels) in enumerate(clips):
        start = time.perf_counter()
        out = soft_nms(segs, scores, sigma, min_score, max_num, labels if multiclass else None, multiclass)
        elapsed = (time.perf_counter() - start) * 1e3
        if i:  # the first call is a warm-up
            times.append(elapsed)
            kept.append(out.scores.numel())
    return {"name": name, "median": statistics.median(times), "min": min(times), "max": max(times),
            "kept": statistics.median(kept)}


def record(rows: list[dict], command: str) -> None:
    """Append a dated section to bench/RESULTS.md (never overwrite)."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "",
        f"## Soft-NMS (`bench/bench_nms.py`), {now}",
        "",
        (
            f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; torch {torch.__version__}, "
            f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"1-min load average at the end {os.getloadavg()[0]:.2f} (shared machine)"
        ),
        f"- command: `{command}`",
        (
            "- figures: wall time of one `soft_nms` call per clip (ms), over fresh random clips; "
            "reference: the release's C++ op with its per-class loop, 11.7 ms for 5000 candidates x 110 classes"
        ),
        "",
        "| case | median ms | min ms | max ms | kept (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['name']} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {r['kept']:.0f} |" for r in rows]
    if not RESULTS.exists():
        with RESULTS.open("x", encoding="utf-8") as f:
            f.write("# Benchmark results\n")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed clips per case (after one warm-up)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    rows = []
    for name in args.cases:
        slow = "cap2000" in name or "30000" in name
        row = time_case(name, max(3, args.repeats // 5) if slow else args.repeats)
        rows.append(row)
        print(f"{row['name']:24s} median {row['median']:7.2f} ms  (min {row['min']:.2f}, max {row['max']:.2f}), kept {row['kept']:.0f}")
    if not args.no_record:
        env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
        record(rows, env + "python " + " ".join(["bench/bench_nms.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
