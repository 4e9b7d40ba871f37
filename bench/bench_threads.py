"""Threads for small models: the demo MQ training step on 1 and 2 threads and on the default
policy (``train.threads: 0``: all cores, one thread once the steps slow down), idle and under load.

The load is made here: ``--busy N`` processes spinning in a Python loop (started before and
ended after each measurement), so it is the same every time, unlike whatever else the machine
is doing. A step is the trainer's (free gradients, forward + losses, backward, clipping, fused
AdamW, EMA) on a random batch of the demo's size (batch 4, 104 channels, 256 cells), in the
precision ``train.amp: auto`` picks on this CPU. Median of ``--steps`` after three warm-ups.

On 2 cores, 2 threads and 2 busy processes make every OpenMP parallel region wait for the
thread that got the least CPU: the step does not take 2x longer, it collapses. ``train.threads: 0``
(``auto`` below) therefore watches the steps and drops to one thread when they slow down
(:mod:`egoasl.engine.cpu_threads`); its time is the total of all timed steps, switch included.

    python bench/bench_threads.py                 # threads 1, 2 and auto, busy 0 and 2; appends to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import append_section, cpu_model, training_step

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SPIN = "while True:\n    pass\n"


def measure(threads: int, steps: int) -> dict:
    import torch

    from egoasl.config import load_config
    from egoasl.engine.cpu_threads import apply_threads
    from egoasl.engine.ema import ModelEMA
    from egoasl.engine.precision import autocast_context, resolve_amp
    from egoasl.engine.train import make_optimizer
    from egoasl.model.detector import MQDetector

    guard = apply_threads(threads, torch.device("cpu"))  # threads 0: the default policy with its guard
    torch.manual_seed(0)
    cfg = load_config("demo/mq")
    device = torch.device("cpu")
    amp, _ = resolve_amp(cfg.train.amp, device)
    model = MQDetector(cfg).train()
    optimizer = make_optimizer(model, cfg, device)
    ema = ModelEMA(model, cfg.train.ema_decay)
    batch, cells = cfg.train.batch_size, cfg.data.max_seq_len
    feats = torch.randn(batch, sum(s.dim for s in cfg.data.sources), cells)
    masks = torch.ones(batch, cells, dtype=torch.bool)
    segments = [torch.tensor([[10.0, 40.0], [100.0, 180.0]]) for _ in range(batch)]
    labels = [torch.tensor([1, 3]) for _ in range(batch)]
    autocast = autocast_context(amp, device, recast_weights=cfg.train.recast_weights)

    def losses() -> dict:
        with autocast():
            out = model(feats, masks)
        return model.losses(out, segments, labels)

    step = training_step(model, optimizer, ema, losses, cfg.train.clip_grad_norm)
    times = []
    for i in range(3 + steps):
        tic = time.perf_counter()
        step()
        seconds = time.perf_counter() - tic
        guard.after_step(seconds)
        if i >= 3:  # three untimed warm-up steps
            times.append(seconds)
    total = sum(times)
    times.sort()
    return {"threads": threads or "auto", "amp": amp, "step_ms": 1000 * times[len(times) // 2],
            "worst_ms": 1000 * times[-1], "total_s": total, "threads_at_end": torch.get_num_threads(),
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2,0", help="comma-separated; 0 = train.threads=0 (auto)")
    parser.add_argument("--busy", default="0,2", help="comma-separated numbers of busy-loop processes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.steps)))
        return
    load_before = os.getloadavg()[0]
    rows = []
    for busy in (int(b) for b in args.busy.split(",")):
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
        try:
            time.sleep(1.0 if busy else 0.0)
            for threads in (int(t) for t in args.threads.split(",")):
                env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
                out = subprocess.run([sys.executable, __file__, "--child", str(threads), "--steps", str(args.steps)],
                                     check=True, capture_output=True, text=True, env=env).stdout
                result = {"busy": busy, **json.loads(out.strip().splitlines()[-1])}
                rows.append(result)
                print(json.dumps(result), flush=True)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    idle = {r["threads"]: r["step_ms"] for r in rows if r["busy"] == 0}
    table = "\n".join(
        f"| {r['busy']} | {r['threads']} | {r['threads_at_end']} | {r['step_ms']:.1f} | {r['worst_ms']:.1f} | "
        f"{r['total_s']:.2f} | " + (f"{r['step_ms'] / idle[r['threads']]:.1f}x |" if r["threads"] in idle else "- |")
        for r in rows
    )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""
## Threads for small models under load (`bench/bench_threads.py`), {now}

- machine: {os.cpu_count()} CPUs, {cpu_model()}; 1-min load average {load_before:.2f} before (the busy processes are this bench's own)
- command: `python bench/bench_threads.py --threads {args.threads} --busy {args.busy} --steps {args.steps}`
- step: the trainer's, demo MQ model ({rows[0]['params'] / 1e6:.2f}M parameters), batch 4 x 104 channels x 256 cells, precision {rows[0]['amp']} (`train.amp: auto`); median and worst of {args.steps} steps

| busy processes | threads | threads at the end | step (ms, median) | worst step (ms) | all steps (s) | median vs idle, same policy |
|---:|---:|---:|---:|---:|---:|---:|
{table}
"""
    append_section(args.results, section)


if __name__ == "__main__":
    main()
