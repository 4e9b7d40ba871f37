"""Data-loading throughput at the real feature sizes: can the loader feed a GPU?

A full-size synthetic dataset (``egoasl synth --scale full --videos N``: 480 s clips, per-video
SlowFast [N, 2304] and Omnivore [N, 1536] files sliced to each clip, per-clip EgoVLP [M, 256])
plus a per-clip InternVideo [M, 1024] source written here, i.e. the four sources of the
release (5120 channels), aligned and resized to 1024 cells as ``mq/release`` does, with the
training crop. Measured as training clips per second through the trainer's DataLoader
(batch 2, the trainer's collate), in four settings:

- ``no cache``: every clip read from its feature files (already in the OS page cache after a
  first untimed pass, so this is the CPU cost of reading, slicing and resizing, not the disk's);
- ``fp16 cache``: ``data.cache_dir`` set; one untimed pass writes the cache, the timed pass reads it;

each with 0 and 2 DataLoader workers. A V100-class GPU takes well under a second per full-size
step of batch 2, so a loader below ~4 clips/s would keep it waiting.

    python bench/bench_loader.py                 # appends a section to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

from common import append_section, cpu_model

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def build_dataset(root: Path, videos: int) -> Path:
    import torch

    from egoasl.data.synthetic import generate_synthetic

    data = root / f"full_v{videos}"
    if not (data / "synthetic.json").is_file():
        generate_synthetic(data, seed=0, scale="full", videos=videos)
        clip_files = sorted((data / "features" / "egovlp").glob("*.pt"))
        out = data / "features" / "internvideo"
        out.mkdir(exist_ok=True)
        gen = torch.Generator().manual_seed(0)
        for path in clip_files:  # the same number of rows as the other per-clip source
            rows = torch.load(path, weights_only=True).shape[0]
            torch.save(torch.randn(rows, 1024, generator=gen), out / path.name)
    return data


def config(data: Path, cache: Path | None):
    from egoasl.config import SourceConfig, load_config

    cfg = load_config("mq/release", [f"data.root={data}", "data.features=features"])
    cfg.data.sources = [
        SourceConfig("egovlp", 256, 256, "egovlp", "clip"),
        SourceConfig("slowfast", 2304, 128, "slowfast", "video"),
        SourceConfig("omnivore", 1536, 128, "omnivore", "video"),
        SourceConfig("internvideo", 1024, 512, "internvideo", "clip"),
    ]
    cfg.data.cache_dir = str(cache) if cache else ""
    cfg.model.num_classes = 110
    return cfg


def clips_per_second(cfg, workers: int, run_dir: Path, passes: int) -> tuple[float, int]:
    import torch

    from egoasl.engine.tasks import build_task

    task = build_task(cfg, run_dir)
    dataset = task.train_dataset()
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=False, num_workers=workers,
                                         collate_fn=task.collate, persistent_workers=workers > 0)
    for _ in range(passes - 1):  # untimed: page cache / fp16 cache warm-up, worker start-up
        for _ in loader:
            pass
    tic = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch["feats"].shape[0]
    return n / (time.perf_counter() - tic), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="synthetic videos (2 MQ clips each)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_loader"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the training process's threads belong to the model; the loader is measured alone
    data = build_dataset(args.work, args.videos)
    load_before = os.getloadavg()[0]
    rows = []
    for cached in (False, True):
        cache = args.work / "cache" if cached else None
        for workers in (0, 2):
            rate, n = clips_per_second(config(data, cache), workers, args.work / "run", passes=2)
            rows.append((cached, workers, rate, n))
            print(json.dumps({"fp16_cache": cached, "workers": workers, "clips_per_s": rate, "clips": n}), flush=True)
    cache_mb = sum(p.stat().st_size for p in (args.work / "cache").rglob("*.pt")) / 2**20
    feat_mb = sum(p.stat().st_size for p in (data / "features").rglob("*.pt")) / 2**20
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(f"| {'fp16 cache' if c else 'no cache'} | {w} | {r:.1f} | {n} |" for c, w, r, n in rows)
    section = f"""
## Data loading at real sizes (`bench/bench_loader.py`), {now}

- machine: {os.cpu_count()} CPUs, {cpu_model()}; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after
- command: `python bench/bench_loader.py --videos {args.videos}`
- data: `egoasl synth --scale full --videos {args.videos}` (480 s clips; SlowFast 2304-d and Omnivore 1536-d per video, EgoVLP 256-d per clip) + InternVideo 1024-d per clip: {feat_mb:.0f} MB of float32 features; the fp16 cache of the aligned clips: {cache_mb:.0f} MB
- pipeline: `mq/release` data settings (4 sources, 5120 channels, resized to 1024 cells, training crop), DataLoader batch 2, the trainer's collate; the timed pass follows an untimed one

| features read from | workers | train clips / s | clips |
|---|---:|---:|---:|
{table}
"""
    append_section(args.results, section)


if __name__ == "__main__":
    main()
