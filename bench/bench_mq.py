"""Speed of the full-size MQ detector on this machine: training step and per-clip inference.

Full-size preset (``mq/release``: width 1024, 16 heads, 10 levels, four sources = 5120
input channels), batch 2, 1024 steps, random inputs with 10 ground-truth segments per clip.
Each precision runs in its own process so that its peak memory (max RSS) is its own.

    python bench/bench_mq.py            # fp32 and bf16, appends a section to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def measure(amp: str, steps: int, clips: int, preset: str) -> dict:
    import torch

    from egoasl.config import load_config
    from egoasl.data.timegrid import TimeGrid
    from egoasl.engine.decode import decode_clip
    from egoasl.engine.ema import ModelEMA
    from egoasl.model.detector import MQDetector
    from egoasl.model.param_groups import param_groups

    torch.manual_seed(0)
    cfg = load_config(preset)
    channels = sum(s.dim for s in cfg.data.sources)
    T, B = cfg.data.max_seq_len, cfg.train.batch_size
    model = MQDetector(cfg)
    ema = ModelEMA(model, cfg.train.ema_decay)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay, cfg.asl.wd_on_gauss), lr=cfg.train.lr)
    feats = torch.randn(B, channels, T)
    masks = torch.ones(B, T, dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)
    segments, labels = [], []
    for _ in range(B):
        start = torch.rand(10, generator=gen) * (T - 64)
        length = torch.exp(torch.rand(10, generator=gen) * 5.5)
        segments.append(torch.stack([start, (start + length).clamp(max=T - 1)], 1))
        labels.append(torch.randint(0, cfg.model.num_classes, (10,), generator=gen))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp == "bf16" else (lambda: torch.autocast("cpu", enabled=False))

    def step() -> float:
        with ctx():
            out = model(feats, masks)
        losses = model.losses(out, segments, labels)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model)
        return float(losses["loss"].detach())

    model.train()
    first_loss = step()  # warm-up (allocations, kernels)
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    model.eval()
    grid = TimeGrid.resized(480.0, T)
    infer = []
    with torch.no_grad():
        for i in range(clips + 1):
            tic = time.perf_counter()
            with ctx():
                out = model(feats[:1], masks[:1])
            det = decode_clip([x[0].float() for x in out.cls_logits], [x[0].float() for x in out.offsets],
                              [x[0] for x in out.masks], out.points, cfg.test, cfg.model.num_classes)
            grid.to_seconds(det.segments)
            if i:
                infer.append(time.perf_counter() - tic)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "amp": amp, "train_step_s": sorted(times)[len(times) // 2], "train_steps": steps,
        "first_loss": first_loss, "peak_rss_gib": train_rss, "infer_s": sorted(infer)[len(infer) // 2],
        "infer_clips": clips, "params": params, "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mq/release")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    parser.add_argument("--clips", type=int, default=5, help="timed inference clips (after one warm-up)")
    parser.add_argument("--child", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.clips, args.preset)))
        return
    results = {}
    for amp in ("fp32", "bf16"):
        cmd = [sys.executable, __file__, "--child", amp, "--preset", args.preset, "--steps", str(args.steps), "--clips", str(args.clips)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[amp] = json.loads(out.strip().splitlines()[-1])
        print(amp, results[amp], flush=True)
    fp32, bf16 = results["fp32"], results["bf16"]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""
## MQ detector speed (`bench/bench_mq.py`), {now}

- machine: {os.cpu_count()} CPUs, {cpu}; torch threads {fp32['threads']}; load average at the end {os.getloadavg()[0]:.2f}
- command: `python bench/bench_mq.py --preset {args.preset} --steps {args.steps} --clips {args.clips}`
- model: {args.preset}, {fp32['params'] / 1e6:.2f}M trained parameters; batch 2 x 5120 channels x 1024 steps, random inputs, 10 GT per clip
- a training step = forward + losses + backward + clip + AdamW step + EMA update (median of {args.steps}, after a warm-up step); inference = one clip's forward + decode + Soft-NMS (median of {args.clips})
- reference (issue): the authors' code 19.2 s per step, 13.4 GiB peak, 2.5 s per clip; ActionFormer's Ego4D model 6.5 s and 0.92 s; targets <= 6 s at <= 6 GiB (bf16), <= 0.5 s per clip

| precision | train step (s) | peak RSS (GiB) | inference (s/clip) | initial loss |
|---|---:|---:|---:|---:|
| fp32 | {fp32['train_step_s']:.2f} | {fp32['peak_rss_gib']:.2f} | {fp32['infer_s']:.3f} | {fp32['first_loss']:.5f} |
| bf16 autocast | {bf16['train_step_s']:.2f} | {bf16['peak_rss_gib']:.2f} | {bf16['infer_s']:.3f} | {bf16['first_loss']:.5f} |

- loss difference bf16 - fp32 on the same weights and batch: {bf16['first_loss'] - fp32['first_loss']:+.5f} ({100 * (bf16['first_loss'] - fp32['first_loss']) / fp32['first_loss']:+.3f} %)
"""
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(section)
    print(section)


if __name__ == "__main__":
    main()
