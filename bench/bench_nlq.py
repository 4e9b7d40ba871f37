"""Speed of the full-size NLQ grounder on this machine: training step and per-query inference.

Full-size preset (``nlq/asl``: width 512, 16 heads, 6 levels, local window 9, 5 text layers,
2 fusion layers; EgoVLP 256 + InternVideo 1024 + CLIP 512 = 1792 input channels, 768-d
text), with late fusion (the default: text fused into every pyramid level) and early fusion
(``model.fusion=early``: text fused after every stem block). Inputs are random: every clip is
valid on 900 cells (an 8-minute clip at 1.875 vectors/s) and padded as the trainer pads a batch,
to its longest clip rounded up to the pyramid's multiple (928 cells; ``--pad max`` pads to
``max_seq_len`` = 2304, the padding before NLQ batches were cut); queries have 20 and 14 tokens; one window of
15 cells (8 s) per query. The preset trains with batch 16, which is too heavy for a 2-core
CPU, so the training step is measured at **batch 2** (a step of batch 16 costs roughly 8x).
Each precision runs in its own process so that its peak memory (max RSS) is its own.

    python bench/bench_nlq.py            # late and early fusion, fp32 and bf16; appends to bench/RESULTS.md
    python bench/bench_nlq.py --preset demo/nlq --steps 1 --queries 1 --no-record   # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_model, training_step

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
VALID_STEPS = 900
TOKENS = (20, 14)


def measure(amp: str, steps: int, queries: int, preset: str, batch: int, fusion: str = "late",
            pad: str = "batch") -> dict:
    import torch

    from egoasl.config import load_config
    from egoasl.data.timegrid import OFFICIAL_FEATURE_STEP, TimeGrid
    from egoasl.engine.decode import decode_clip, to_seconds
    from egoasl.engine.ema import ModelEMA
    from egoasl.engine.host_memory import keep_freed_heap_memory
    from egoasl.engine.precision import autocast_context
    from egoasl.engine.train import make_optimizer
    from egoasl.model.grounder import NLQGrounder

    keep_freed_heap_memory()  # as the trainer does on CPU
    torch.manual_seed(0)
    cfg = load_config(preset, [f"model.fusion={fusion}"])
    channels = sum(s.dim for s in cfg.data.sources)
    valid = min(VALID_STEPS, cfg.data.max_seq_len)
    multiple = 2 ** (cfg.model.num_levels - 1)
    T = cfg.data.max_seq_len if pad == "max" else -(-valid // multiple) * multiple
    model = NLQGrounder(cfg)
    ema = ModelEMA(model, cfg.train.ema_decay)
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    masks = torch.zeros(batch, T, dtype=torch.bool)
    masks[:, :valid] = True
    feats = torch.randn(batch, channels, T, generator=gen) * masks[:, None]
    lengths = [TOKENS[b % len(TOKENS)] for b in range(batch)]
    text_masks = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (B, L)
    text = torch.randn(batch, max(lengths), cfg.data.text_dim, generator=gen) * text_masks[..., None]
    starts = torch.rand(batch, generator=gen) * (valid - 20)
    segments = [torch.tensor([[float(s), float(s) + 15.0]]) for s in starts]
    labels = [torch.zeros(1, dtype=torch.long) for _ in range(batch)]
    ctx = autocast_context("bf16" if amp == "bf16" else "none", torch.device("cpu"), recast_weights=cfg.train.recast_weights)

    def losses() -> dict:
        with ctx():
            out = model(feats, masks, text, text_masks)
        return model.losses(out, segments, labels)

    step = training_step(model, optimizer, ema, losses, cfg.train.clip_grad_norm)

    model.train()
    first_loss = step()  # warm-up (allocations, kernels)
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    model.eval()
    grid = TimeGrid(step=OFFICIAL_FEATURE_STEP, offset=0.5 * OFFICIAL_FEATURE_STEP, duration=480.0)
    infer = []
    with torch.no_grad():
        for i in range(queries + 1):
            tic = time.perf_counter()
            with ctx():
                out = model(feats[:1], masks[:1], text[:1, : lengths[0]], text_masks[:1, : lengths[0]])
            det = decode_clip([x[0].float() for x in out.cls_logits], [x[0].float() for x in out.offsets],
                              [x[0] for x in out.masks], out.points, cfg.test, 1)
            to_seconds(det, grid)
            if i:
                infer.append(time.perf_counter() - tic)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "amp": amp, "train_step_s": sorted(times)[len(times) // 2], "train_steps": steps,
        "first_loss": first_loss, "peak_rss_gib": train_rss, "infer_s": sorted(infer)[len(infer) // 2],
        "infer_queries": queries, "params": params, "threads": torch.get_num_threads(), "padded_len": T,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nlq/asl")
    parser.add_argument("--batch", type=int, default=2, help="training batch (the preset's 16 is too heavy for a CPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    parser.add_argument("--queries", type=int, default=5, help="timed inference queries (after one warm-up)")
    parser.add_argument("--fusion", nargs="+", choices=["late", "early"], default=["late", "early"])
    parser.add_argument("--pad", choices=["batch", "max"], default="batch",
                        help="batch: to the longest clip rounded to the pyramid multiple (the trainer); max: max_seq_len")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    parser.add_argument("--child", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.queries, args.preset, args.batch, args.fusion[0],
                                 args.pad)))
        return
    results = {}
    for fusion in args.fusion:
        for amp in ("fp32", "bf16"):
            cmd = [sys.executable, __file__, "--child", amp, "--preset", args.preset, "--batch", str(args.batch),
                   "--steps", str(args.steps), "--queries", str(args.queries), "--fusion", fusion, "--pad", args.pad]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[fusion, amp] = json.loads(out.strip().splitlines()[-1])
            print(fusion, amp, results[fusion, amp], flush=True)
    fp32 = results[args.fusion[0], "fp32"]
    rows = "\n".join(
        f"| {fusion} | {'fp32' if amp == 'fp32' else 'bf16 autocast'} | {r['params'] / 1e6:.2f} | {r['train_step_s']:.2f} "
        f"| {r['peak_rss_gib']:.2f} | {r['infer_s']:.3f} | {r['first_loss']:.5f} |"
        for (fusion, amp), r in results.items()
    )
    cpu = cpu_model()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""
## NLQ grounder speed (`bench/bench_nlq.py`), {now}

- machine: {os.cpu_count()} CPUs, {cpu}; torch threads {fp32['threads']}; load average at the end {os.getloadavg()[0]:.2f} (shared machine)
- command: `python bench/bench_nlq.py --preset {args.preset} --batch {args.batch} --steps {args.steps} --queries {args.queries} --fusion {' '.join(args.fusion)} --pad {args.pad}`
- model: {args.preset}; random inputs padded to {fp32['padded_len']} cells ({args.pad}), {min(VALID_STEPS, fp32['padded_len'])} valid cells per clip, {TOKENS[0]}/{TOKENS[1]}-token queries, one 15-cell window per query
- training step at **batch {args.batch}** (the preset's batch 16 is too heavy for this CPU; expect roughly 8x for 16) = forward + losses (focal, DIoU, NCE) + backward + clip + AdamW step + EMA update, median of {args.steps} after a warm-up step; inference = one query's forward (batch 1) + decode + Soft-NMS + voting + top-5 in seconds, median of {args.queries}

| fusion | precision | params (M) | train step, batch {args.batch} (s) | peak RSS (GiB) | inference (s/query) | initial loss |
|---|---|---:|---:|---:|---:|---:|
{rows}
"""
    if not args.no_record:
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write(section)
    print(section)


if __name__ == "__main__":
    main()
