"""Speed and memory of the full-size MQ detector on this machine: training step and per-clip inference.

Full-size preset (``mq/release``: width 1024, 16 heads, 10 levels, four sources = 5120
input channels), batch 2, 1024 steps, random inputs with 10 ground-truth segments per clip.
Each variant runs in its own process, so that its peak memory (max RSS) is its own:

- ``fp32``: no autocast;
- ``bf16``: bfloat16 autocast, the setting these machines train with (``train.amp: bf16``);
- ``bf16-fastdrop``: bf16 with ``model.dropout_sampler: fast`` (:mod:`egoasl.model.dropout`);
- ``bf16-ckpt``: bf16 with ``model.grad_checkpoint`` (stem and branch blocks recomputed in backward);
- ``fp16``: float16 autocast with the trainer's GradScaler (CUDA only).

``--device cuda`` runs the same measurements on a GPU; peak memory is then the GPU's
(``torch.cuda.max_memory_allocated``) and every timing ends with a synchronisation.

The training step is the trainer's (:func:`egoasl.engine.train.train`), with its allocator
setting (:mod:`egoasl.engine.host_memory`): gradients freed, forward + losses, backward,
gradient clipping, the trainer's AdamW (:func:`make_optimizer`), EMA update. Two warm-up
steps are not timed: over them the heap grows to its working size, paying page faults
that later steps do not (the page faults of the timed steps are reported). Inference is one clip (batch 1)
at a time: the forward, then decoding (per-level top-k, Soft-NMS, seconds), timed
separately. The model has only taken the bench's few training steps, so nearly every
(point, class) pair passes the 0.001 score threshold: decoding works on its worst case.

``--preload LIB`` runs every variant with another malloc (jemalloc: ``apt install libjemalloc2``).
glibc's heap, with freed memory kept, fragments over a full-size step: its peak resident
memory is ~1 GiB above the bytes in use. jemalloc (decay off) gave 5.7 GiB in a plain step
loop but 7.1 GiB and 100k page faults per step here (``bench/RESULTS.md``, 2026-12-05).

The machine is shared: the 1-minute load average is recorded before and after; with other
work running, OpenMP threads wait for each other and every timing inflates.

    python bench/bench_mq.py                      # all variants, appends a section to bench/RESULTS.md
    python bench/bench_mq.py --variants bf16      # one variant
    python bench/bench_mq.py --device cuda --variants fp32,bf16,fp16 --results OUT.md   # on a GPU
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

from common import append_section, cpu_model, random_mq_batch, training_step

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # jemalloc keeps freed pages, as the trainer's glibc setting does
VARIANTS = {  # name: (train.amp, model.grad_checkpoint, model.dropout_sampler)
    "fp32": ("none", False, "torch"),
    "bf16": ("bf16", False, "torch"),
    "bf16-fastdrop": ("bf16", False, "fast"),
    "bf16-ckpt": ("bf16", True, "torch"),
    "fp16": ("fp16", False, "torch"),
}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure(variant: str, steps: int, clips: int, preset: str, device_name: str) -> dict:
    import torch

    from egoasl.config import load_config
    from egoasl.data.timegrid import TimeGrid
    from egoasl.engine.decode import decode_clip, to_seconds
    from egoasl.engine.ema import ModelEMA
    from egoasl.engine.host_memory import keep_freed_heap_memory
    from egoasl.engine.precision import autocast_context
    from egoasl.engine.train import make_optimizer
    from egoasl.model.detector import MQDetector

    amp, grad_checkpoint, dropout_sampler = VARIANTS[variant]
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    if not cuda:
        keep_freed_heap_memory()  # as the trainer does on CPU
    torch.manual_seed(0)
    cfg = load_config(preset)
    cfg.model.grad_checkpoint = grad_checkpoint
    cfg.model.dropout_sampler = dropout_sampler
    T = cfg.data.max_seq_len
    model = MQDetector(cfg).to(device)
    ema = ModelEMA(model, cfg.train.ema_decay)
    optimizer = make_optimizer(model, cfg, device)
    feats, masks, segments, labels = random_mq_batch(cfg, device)
    autocast = autocast_context(amp, device, recast_weights=cfg.train.recast_weights)  # as the trainer
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def losses() -> dict:
        with autocast():
            out = model(feats, masks)
        return model.losses(out, segments, labels)

    step = training_step(model, optimizer, ema, losses, cfg.train.clip_grad_norm, scaler)

    model.train()
    first_loss = step()  # warm-up: kernels, optimizer state
    step()  # the heap grows to its working size over the first two steps (page faults): not timed
    times, faults = [], []
    for _ in range(steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    train_gpu = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None

    model.eval()
    grid = TimeGrid.resized(480.0, T)
    forward_s, decode_s, candidates = [], [], 0
    with torch.no_grad(), autocast():  # one autocast region, as prediction runs
        for i in range(clips + 1):  # the first clip warms up (and casts the weights)
            tic = time.perf_counter()
            out = model(feats[:1], masks[:1])
            logits = [x[0].float() for x in out.cls_logits]
            sync()
            toc = time.perf_counter()
            det = decode_clip(logits, [x[0].float() for x in out.offsets], [x[0] for x in out.masks], out.points,
                              cfg.test, cfg.model.num_classes)
            to_seconds(det, grid)
            sync()
            if i:
                forward_s.append(toc - tic)
                decode_s.append(time.perf_counter() - toc)
            candidates = int(sum((torch.sigmoid(x) > cfg.test.pre_nms_thresh).sum() for x in logits))
    return {
        "variant": variant, "train_step_s": median(times), "train_step_all_s": [round(t, 2) for t in times],
        "train_steps": steps, "page_faults_per_step": median(faults), "first_loss": first_loss,
        "peak_rss_gib": train_rss, "forward_s": median(forward_s), "decode_s": median(decode_s),
        "infer_s": median([f + d for f, d in zip(forward_s, decode_s)]), "candidates": candidates,
        "scores": sum(x.shape[1] * x.shape[2] for x in out.cls_logits), "infer_clips": clips,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad), "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu", "peak_gpu_gib": train_gpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mq/release")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps (after two warm-up steps)")
    parser.add_argument("--clips", type=int, default=5, help="timed inference clips (after one warm-up clip)")
    parser.add_argument("--variants", help=f"comma-separated, from {', '.join(VARIANTS)} "
                        "(default: all that run on the device: fp16 only on cuda)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the section is appended to")
    parser.add_argument("--preload", type=Path, metavar="LIB",
                        help="run each variant with this malloc preloaded (LD_PRELOAD), e.g. Debian's "
                        f"libjemalloc.so.2, with MALLOC_CONF={JEMALLOC_CONF} unless MALLOC_CONF is set")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.clips, args.preset, args.device)))
        return
    if args.variants is None:
        args.variants = ",".join(v for v in VARIANTS if v != "fp16" or args.device.startswith("cuda"))
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if "fp16" in variants and not args.device.startswith("cuda"):
        parser.error("the fp16 variant needs --device cuda (fp16 autocast with a GradScaler is a GPU setting)")
    child_env = dict(os.environ)
    allocator = "glibc malloc (the trainer's setting: freed heap memory kept)"
    if args.preload:
        if not args.preload.is_file():
            parser.error(f"--preload {args.preload}: no such file")
        child_env["LD_PRELOAD"] = str(args.preload.resolve())
        child_env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
        allocator = f"LD_PRELOAD={args.preload.name}, MALLOC_CONF={child_env['MALLOC_CONF']}"
    load_before = os.getloadavg()[0]
    results = {}
    for variant in variants:
        cmd = [sys.executable, __file__, "--child", variant, "--preset", args.preset, "--steps", str(args.steps),
               "--clips", str(args.clips), "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
        print(variant, results[variant], flush=True)
    load_after = os.getloadavg()[0]
    any_result = next(iter(results.values()))
    cpu = cpu_model()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gpu = any_result["device"] if args.device.startswith("cuda") else None
    memory = "peak GPU memory allocated (GiB)" if gpu else "peak RSS (GiB)"
    rows = "\n".join(
        f"| {v} | {r['train_step_s']:.3f} | {r['page_faults_per_step']} "
        f"| {r['peak_gpu_gib'] if gpu else r['peak_rss_gib']:.2f} | {r['forward_s']:.3f} "
        f"| {r['decode_s']:.3f} | {r['infer_s']:.3f} | {r['first_loss']:.5f} |"
        for v, r in results.items()
    )
    section = f"""
## MQ detector speed (`bench/bench_mq.py`), {now}

- machine: {f"GPU {gpu}; host " if gpu else ""}{os.cpu_count()} CPUs, {cpu}; torch threads {any_result['threads']}; 1-min load average {load_before:.2f} before, {load_after:.2f} after (shared machine)
- command: `python bench/bench_mq.py --preset {args.preset} --steps {args.steps} --clips {args.clips} --variants {args.variants} --device {args.device}{f" --preload {args.preload}" if args.preload else ""}`
- allocator: {allocator}
- model: {args.preset}, {any_result['params'] / 1e6:.2f}M trained parameters; batch 2 x 5120 channels x 1024 steps, random inputs, 10 GT per clip
- training step = the trainer's: free gradients, forward + losses, backward, clip, fused AdamW, EMA (median of {args.steps} after two warm-up steps); peak RSS = max resident memory of the variant's process
- inference = one clip at batch 1: forward, then decode (top-k, Soft-NMS, seconds), medians of {args.clips}; the model has only taken the bench's training steps, so {any_result['candidates']} of {any_result['scores']} (point, class) scores pass the 0.001 threshold, the worst case for decoding
- reference (issue, on the 2-core CPU): the authors' code 19.2 s per step, 13.4 GiB peak, 2.5 s per clip; targets (issue 11) <= 5.5 s at <= 6.0 GiB (bf16), <= 0.9 s per clip

| variant | train step (s) | page faults per step | {memory} | forward (s/clip) | decode (s/clip) | inference (s/clip) | initial loss |
|---|---:|---:|---:|---:|---:|---:|---:|
{rows}
"""
    if "fp32" in results and "bf16" in results:
        fp32, bf16 = results["fp32"]["first_loss"], results["bf16"]["first_loss"]
        section += (f"\n- loss difference bf16 - fp32 on the same weights and batch: {bf16 - fp32:+.5f} "
                    f"({100 * (bf16 - fp32) / fp32:+.3f} %)\n")
    append_section(args.results, section)


if __name__ == "__main__":
    main()
