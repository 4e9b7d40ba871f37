"""How many CPU threads a run's PyTorch operations use (``train.threads``).

``train.threads: N > 0`` uses N threads, and ``OMP_NUM_THREADS`` set in the environment is
respected as the user's choice. ``0`` (the default) times a few training steps on PyTorch's
default count (one thread per core) and on one thread, keeps the faster, and decides again
from time to time and whenever the steps slow down (:class:`ContentionGuard`). On a shared
CPU every OpenMP parallel region waits for the thread that got the least CPU time, so a busy
machine does not make a multi-threaded step proportionally slower, it can make it collapse:
with other developers' jobs on the 2 cores the demo MQ step took 8.7-11.5 s on 2 threads
against 0.5-0.9 s on one (``bench/RESULTS.md``). An idle machine keeps all its cores (the
demo NLQ step is 1.5x faster on 2 threads than on one). The thread count changes the order of
floating-point reductions, so a guarded run is not bit-reproducible; set ``train.threads``
for that.
"""

from __future__ import annotations

import logging
import os
import statistics

import torch

PROBE_STEPS = 3
"""Steps timed on each thread count when the guard (re)decides."""
REPROBE_EVERY = 200
"""Steps after which the guard decides again (the machine's load changes)."""
SLOWDOWN = 3.0
"""A median of the last :data:`PROBE_STEPS` steps this many times the decided speed makes it decide again."""
WARMUP_STEPS = 2  # the first steps allocate memory and pick kernels: not timed
DEFAULT_THREADS = torch.get_num_threads()
"""PyTorch's default intra-op thread count in this process, read before any run changed it."""


def choose_threads(requested: int, device: torch.device) -> tuple[int, str, bool]:
    """The intra-op thread count for a run, the reason (logged), and whether to guard it."""
    if requested > 0:
        return requested, f"train.threads={requested}", False
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}", False
    count = DEFAULT_THREADS
    guarded = device.type == "cpu" and count > 1
    reason = ("train.threads=0: PyTorch's default, or one thread when timed steps say it is faster (a shared CPU)"
              if guarded else "train.threads=0: PyTorch's default")
    return count, reason, guarded


class ContentionGuard:
    """Chooses between all cores and one thread by timing both, and decides again when it pays.

    After :data:`WARMUP_STEPS`, it times :data:`PROBE_STEPS` training steps on the default count,
    then as many on one thread, and keeps the faster (all cores unless one thread is faster).
    It decides again every :data:`REPROBE_EVERY` steps, and at once when the median of the last
    steps exceeds :data:`SLOWDOWN` times the speed it decided on (load that arrived since).
    Call :meth:`after_step` with each training step's duration; it returns a line to log when
    the thread count changes. Inactive when the count was chosen by the user.
    """

    def __init__(self, active: bool) -> None:
        self.active = active
        self.many = torch.get_num_threads()
        self.steps = 0
        self.phase = "warmup"
        self.timed: dict[int, list[float]] = {}
        self.recent: list[float] = []
        self.decided_at = 0
        self.speed = float("inf")

    def after_step(self, seconds: float) -> str | None:
        if not self.active:
            return None
        self.steps += 1
        if self.phase == "warmup":
            if self.steps >= WARMUP_STEPS:
                self._probe()
            return None
        if self.phase == "probe":
            count = torch.get_num_threads()
            self.timed.setdefault(count, []).append(seconds)
            if len(self.timed[count]) < PROBE_STEPS:
                return None
            if count != 1:
                torch.set_num_threads(1)
                return None
            return self._decide()
        self.recent = (self.recent + [seconds])[-PROBE_STEPS:]
        slowed = len(self.recent) == PROBE_STEPS and statistics.median(self.recent) > SLOWDOWN * self.speed
        if slowed or self.steps - self.decided_at >= REPROBE_EVERY:
            self._probe()
        return None

    def _probe(self) -> None:
        self.phase, self.timed, self.recent = "probe", {}, []
        torch.set_num_threads(self.many)

    def _decide(self) -> str | None:
        many, one = statistics.median(self.timed[self.many]), statistics.median(self.timed[1])
        count = 1 if one < many else self.many
        self.phase, self.decided_at, self.speed = "run", self.steps, min(one, many)
        torch.set_num_threads(count)
        if count == 1:
            return (f"threads: 1 (a step took {one:.3f} s on one thread, {many:.3f} s on {self.many}: more threads "
                    "do not help this model here, or the CPU is shared); deciding again in a while")
        return None


def apply_threads(requested: int, device: torch.device, logger: logging.Logger | None = None) -> ContentionGuard:
    """Set the thread count :func:`choose_threads` picks, log it, and return the run's guard."""
    count, reason, guarded = choose_threads(requested, device)
    torch.set_num_threads(count)
    if logger is not None and device.type == "cpu":
        logger.info(f"threads: {count} ({reason})")
    return ContentionGuard(guarded)
