"""Where a full-size MQ training step spends its time, and how far it is from this CPU's floor.

One training step of ``mq/release`` (batch 2 x 5120 channels x 1024 cells, bf16 autocast, the
trainer's allocator setting and step order) is run three times:

1. under ``torch.utils.flop_counter.FlopCounterMode``: the step's floating-point operations
   (matmuls, convolutions and attention, forward and backward; the CPU flash-attention kernels
   are counted with the formulas PyTorch uses for the GPU ones);
2. under a dispatch-level timer: every ATen operation is timed on its own (on the CPU they are
   synchronous), so the time splits into *compute* (matmuls, convolutions, attention) and the
   *rest* (element-wise operations, layer norms, casts, copies, random numbers). Unlike
   ``torch.profiler``, which inflates short memory-bound operations, this adds only the
   dispatch overhead (~10 us per operation);
3. plainly, three times, for the step's wall time (the median step), split into forward +
   losses + backward and the clip + AdamW + EMA update.

Then one clip's inference forward (batch 1, no gradients) is counted and timed the same way.

The floor is the step's FLOPs at the speed of one large bf16 matmul on this machine (measured
here, 4096^3), plus the measured update (memory-bound: it reads and writes every parameter,
gradient, moment and EMA weight). What the step takes above that is the element-wise work of
eager PyTorch and compute kernels running below peak.

    python bench/bench_mq_ops.py                                  # appends a section to bench/RESULTS.md
    python bench/bench_mq_ops.py --set model.dropout_sampler=fast # any config override
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import resource
import time
from pathlib import Path

from common import append_section, cpu_model, random_mq_batch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
COMPUTE_OPS = {
    "mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward",
}


def matmul_peak_gflops(dtype, size: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of one large square matmul in ``dtype`` (the best of ``repeats``)."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tic)
    return 2 * size**3 / best / 1e9


def cpu_flash_flop_formulas() -> dict:
    """FLOP formulas for the CPU flash-attention kernels, which ``FlopCounterMode`` does not know."""
    import torch
    from torch.utils import flop_counter

    def forward(query, key, value, *args, out_val=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)

    def backward(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)

    forward._get_raw = backward._get_raw = True
    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mq/release")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as for `egoasl train` (repeatable)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the heap grows to its size)")
    parser.add_argument("--top", type=int, default=15, help="operations listed")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the section is appended to")
    args = parser.parse_args()

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from egoasl.config import load_config
    from egoasl.engine.ema import ModelEMA
    from egoasl.engine.host_memory import keep_freed_heap_memory
    from egoasl.engine.precision import autocast_context
    from egoasl.engine.train import make_optimizer
    from egoasl.model.detector import MQDetector

    keep_freed_heap_memory()
    torch.manual_seed(0)
    cfg = load_config(args.preset, args.overrides)
    device = torch.device("cpu")
    model = MQDetector(cfg).train()
    ema = ModelEMA(model, cfg.train.ema_decay)
    optimizer = make_optimizer(model, cfg, device)
    feats, masks, segments, labels = random_mq_batch(cfg, device)
    autocast = autocast_context("bf16", device, recast_weights=cfg.train.recast_weights)  # as the trainer

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = model(feats, masks)
        model.losses(out, segments, labels)["loss"].backward()

    def update() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
        optimizer.step()
        ema.update(model)

    for _ in range(args.warmup):
        forward_backward()
        update()

    per_op: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])

    class OpTimer(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tic = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            entry = per_op[func.overloadpacket.__name__]
            entry[0] += time.perf_counter() - tic
            entry[1] += 1
            return out

    with FlopCounterMode(display=False, custom_mapping=cpu_flash_flop_formulas()) as counter:
        forward_backward()
    flops = counter.get_total_flops()
    update()
    tic = time.perf_counter()
    with OpTimer():
        forward_backward()
    timed_wall = time.perf_counter() - tic
    update()

    plain = []
    for _ in range(3):
        tic = time.perf_counter()
        forward_backward()
        middle = time.perf_counter()
        update()
        plain.append((middle - tic, time.perf_counter() - middle))
    fwd_bwd, update_s = sorted(plain, key=sum)[1]  # the median step
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    model.eval()  # inference: one clip (batch 1) in one autocast region, as prediction runs
    with torch.no_grad(), autocast():
        with FlopCounterMode(display=False, custom_mapping=cpu_flash_flop_formulas()) as counter:
            model(feats[:1], masks[:1])
        infer_flops = counter.get_total_flops()
        infer_times = []
        for _ in range(4):
            tic = time.perf_counter()
            model(feats[:1], masks[:1])
            infer_times.append(time.perf_counter() - tic)
    infer_s = sorted(infer_times)[len(infer_times) // 2]
    peak = matmul_peak_gflops(torch.bfloat16)
    load = os.getloadavg()[0]

    compute = sum(t for name, (t, _) in per_op.items() if name in COMPUTE_OPS)
    total_ops = sum(t for t, _ in per_op.values())
    floor = flops / (peak * 1e9) + update_s
    rows = "\n".join(
        f"| `{name}` | {'compute' if name in COMPUTE_OPS else 'rest'} | {n} | {t * 1e3:.0f} | {100 * t / total_ops:.1f} |"
        for name, (t, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])[: args.top]
    )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    overrides = " ".join(f"--set {o}" for o in args.overrides)
    section = f"""
## Full-size MQ step: operations and floor (`bench/bench_mq_ops.py`), {now}

- machine: {os.cpu_count()} CPUs, {cpu_model()}; torch threads {torch.get_num_threads()}; 1-min load average {load:.2f} after
- command: `python bench/bench_mq_ops.py --preset {args.preset}{' ' + overrides if overrides else ''}`
- step: batch 2 x 5120 channels x 1024 cells, bf16 autocast, glibc heap kept; {args.warmup} warm-up steps; max RSS {rss:.2f} GiB

| | value |
|---|---:|
| step FLOPs (forward + backward, FlopCounterMode) | {flops / 1e12:.3f} TFLOP |
| bf16 matmul 4096^3 on this machine | {peak:.0f} GFLOP/s |
| forward + losses + backward, plain (median step of 3) | {fwd_bwd:.2f} s |
| clip + AdamW + EMA, plain | {update_s:.2f} s |
| **step, plain** | **{fwd_bwd + update_s:.2f} s** |
| forward + backward under the op timer | {timed_wall:.2f} s (operations {total_ops:.2f} s) |
| compute operations (matmul, conv, attention) | {compute:.2f} s = {flops / compute / 1e9:.0f} GFLOP/s |
| everything else | {total_ops - compute:.2f} s |
| floor: FLOPs at the matmul speed + the update | {floor:.2f} s |
| inference forward FLOPs per clip (batch 1) | {infer_flops / 1e12:.3f} TFLOP |
| inference forward per clip, plain (median of 4) | {infer_s:.3f} s (floor at the matmul speed {infer_flops / (peak * 1e9):.3f} s) |

| operation | kind | calls | ms | % of operations |
|---|---|---:|---:|---:|
{rows}
"""
    append_section(args.results, section)


if __name__ == "__main__":
    main()
