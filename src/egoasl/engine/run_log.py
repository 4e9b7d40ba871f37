"""Training logs through the standard ``logging`` module: the console and ``RUN/train.log``.

While :func:`train` runs, the ``egoasl`` logger writes plain lines to stdout and
timestamped lines to ``RUN/train.log`` (appended across resumes): the command that was
run, how the config differs from its preset, what changed since a resumed run started,
one line per epoch (losses, validation metrics, seconds, peak memory) and the end.
Other processes of a torchrun job log warnings only, to the console.

Progress bars are drawn only when asked for and stderr is a terminal, so a SLURM log
(a file) gets the epoch lines and none of tqdm's carriage-return updates.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

LOGGER_NAME = "egoasl"


@contextlib.contextmanager
def run_logging(run_dir: Path, is_main: bool) -> Iterator[logging.Logger]:
    """The ``egoasl`` logger, writing to the console and (main process) ``run_dir/train.log``."""
    logger = logging.getLogger(LOGGER_NAME)
    previous_level, previous_propagate = logger.level, logger.propagate
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    handlers: list[logging.Handler] = [console]
    if is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(Path(run_dir) / "train.log", encoding="utf-8")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handlers.append(file)
    else:
        console.setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate


def show_progress(requested: bool) -> bool:
    """Whether to draw progress bars: asked for, and stderr (where tqdm draws) is a terminal."""
    return requested and sys.stderr.isatty()


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory so far in GiB: allocated GPU memory on CUDA, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return rss_kib * (1 if sys.platform != "darwin" else 1 / 1024) / 2**20


def epoch_line(epoch: int, epochs: int, losses: dict[str, float], steps: int, seconds: float, memory_gib: float,
               metrics: dict | None = None, split: str = "val", main_metric: str = "") -> str:
    """``epoch 3/15: loss 0.41 (cls 0.30, reg 0.11) | val average_mAP 12.34 | 3 steps, 2.1 s, peak memory 1.20 GiB``."""
    parts = [f"loss {losses.get('loss', float('nan')):.4f}"]
    terms = [f"{name} {value:.4f}" for name, value in losses.items() if name not in ("loss", "loss_norm")]
    if terms:
        parts[0] += f" ({', '.join(terms)})"
    text = f"epoch {epoch}/{epochs}: {parts[0]}"
    if metrics is not None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}  # scores, not the integer counts
        shown = [f"{main_metric} {scalars.pop(main_metric):.2f}"] if main_metric in scalars else []
        shown += [f"{k} {v:.2f}" for k, v in scalars.items()]
        text += f" | {split} " + ", ".join(shown)
    return text + f" | {steps} steps, {seconds:.1f} s, peak memory {memory_gib:.2f} GiB"
