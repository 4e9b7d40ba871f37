"""The training loop: one code path for one process and for torchrun DDP.

A run folder is the unit of work::

    RUN/config.yaml            the resolved config (a resume must match its computation keys)
    RUN/train.log              the command, config differences, one line per epoch (engine.run_log)
    RUN/metrics.jsonl          one JSON object per logged step and per evaluation
    RUN/tb/                    TensorBoard events (losses, lr, metrics, ASL mu/sigma)
    RUN/checkpoints/last.*     written atomically at the end of every epoch
    RUN/checkpoints/best.*     the epoch with the best validation metric

Running the same command again resumes from ``last`` (it continues after the last
finished epoch); ``resume_from`` continues from another run folder or checkpoint. Paths,
workers, device and the other environment keys may change on resume (engine.run_folder).
Randomness is re-seeded at every epoch from ``(seed, epoch)``, so an interrupted and
resumed run takes exactly the same steps as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

from egoasl.config import Config
from egoasl.engine import distributed
from egoasl.engine.accumulation import GradientAccumulation
from egoasl.engine.determinism import deterministic_mode
from egoasl.engine.ema import ModelEMA
from egoasl.data.features import RESIZE_MODE_MEANING
from egoasl.engine.cpu_threads import apply_threads
from egoasl.engine.host_memory import keep_freed_heap_memory
from egoasl.engine.metrics_log import MetricsLog
from egoasl.engine.precision import autocast_context, resolve_amp
from egoasl.engine.run_folder import config_changes, find_resume_checkpoint, prepare_run_folder
from egoasl.engine.run_lock import run_lock
from egoasl.engine.run_log import epoch_line, peak_memory_gib, run_logging, show_progress
from egoasl.engine.schedule import lr_at, set_lr
from egoasl.engine.task import EvalResult, Task
from egoasl.errors import EgoaslError
from egoasl.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from egoasl.model.param_groups import param_groups
from egoasl.model.sensitivity import gaussian_spread


@dataclass
class TrainSummary:
    run_dir: Path
    epochs_run: int
    steps: int
    best_metric: float | None
    best_epoch: int | None
    last_metrics: dict | None
    seconds: float


class _LossModule(nn.Module):
    """Wraps a model so that one ``forward`` returns the losses (what DDP must see)."""

    def __init__(self, task: Task, model: nn.Module, device: torch.device, autocast):
        super().__init__()
        self.model = model
        self._task, self._device, self._autocast = task, device, autocast

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self._task.training_losses(self.model, batch, self._device, self._autocast)


def make_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, with the fused kernel on CPU and CUDA.

    Fused, a step makes one pass over each parameter, its gradient and its two moments
    instead of a dozen element-wise passes: 0.11 s instead of 0.52 s at the release size
    (222 M parameters) on a 2-core CPU. Same update rule.
    """
    groups = param_groups(model, cfg.train.weight_decay, cfg.asl.wd_on_gauss,
                          decay_channel_ln=cfg.train.decay_channel_ln, gauss_lr_mult=cfg.asl.gauss_lr_mult)
    return torch.optim.AdamW(groups, lr=cfg.train.lr, fused=device.type in ("cpu", "cuda"))


def train(
    cfg: Config,
    task: Task,
    run_dir: Path,
    *,
    overfit_batch: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    resume_from: str | Path | None = None,
    command: str = "",
    reference: Config | None = None,
) -> TrainSummary:
    """Train ``task`` with ``cfg`` in ``run_dir``, resuming from its last checkpoint if any.

    ``stop_after_epochs`` ends the call after that many epochs of this call (as an
    interruption would); a later call resumes. ``resume_from`` (``--resume``) continues from
    a run folder or checkpoint file instead of ``run_dir``'s own. ``command`` (what was run)
    and ``reference`` (the preset the config came from) go to ``RUN/train.log`` with the
    config's differences from the preset. Progress bars are drawn only on a terminal.
    """
    info = distributed.from_environment()
    lock = run_lock(run_dir, f"egoasl train, {cfg.name}") if info.is_main else contextlib.nullcontext()
    with lock, run_logging(Path(run_dir), info.is_main) as logger, deterministic_mode(cfg.train.deterministic):
        return _train(cfg, task, Path(run_dir), info, logger, overfit_batch=overfit_batch, progress=progress,
                      stop_after_epochs=stop_after_epochs, resume_from=resume_from, command=command,
                      reference=reference)


def _train(cfg: Config, task: Task, run_dir: Path, info: distributed.DistInfo, logger: logging.Logger, *,
           overfit_batch: bool, progress: bool, stop_after_epochs: int | None, resume_from: str | Path | None,
           command: str, reference: Config | None) -> TrainSummary:
    started = time.time()
    device = distributed.resolve_device(cfg.train.device, info)
    distributed.init(info, device)
    if device.type == "cpu":
        keep_freed_heap_memory()  # no page faults on re-allocated activations (engine.host_memory)
    progress = show_progress(progress) and info.is_main
    if info.is_main:
        _log_start(logger, cfg, run_dir, command, reference, device, info)
    checkpoint = prepare_run_folder(run_dir, cfg, resume_from, logger).checkpoint if info.is_main else None
    distributed.barrier(info)
    if not info.is_main:
        checkpoint = find_resume_checkpoint(run_dir, resume_from)
    ckpt_dir = run_dir / "checkpoints"
    log = MetricsLog(run_dir, enabled=info.is_main, cfg=cfg, logger=logger)

    train_set = task.train_dataset()
    if overfit_batch:
        train_set = Subset(train_set, list(range(min(cfg.train.batch_size, len(train_set)))))
    if len(train_set) == 0:
        raise EgoaslError(f"no training items in splits {cfg.data.train_splits}")
    per_rank_batch = cfg.train.batch_size // info.world_size
    if per_rank_batch < 1:
        raise EgoaslError(f"train.batch_size={cfg.train.batch_size} is smaller than the {info.world_size} processes")
    drop_last = len(train_set) >= cfg.train.batch_size

    torch.manual_seed(cfg.train.seed)
    model = task.build_model().to(device)
    contention = apply_threads(cfg.train.threads, device, logger if info.is_main else None)
    if cfg.train.init_from:
        init = load_checkpoint(cfg.train.init_from)
        missing, unexpected = model.load_state_dict(init.inference_weights(), strict=False)
        if info.is_main:
            logger.info(f"initialised from {cfg.train.init_from} ({len(missing)} missing, {len(unexpected)} unexpected keys)")
    ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema else None
    optimizer = make_optimizer(model, cfg, device)

    start_epoch, step, best, best_epoch, last_metrics = 0, 0, None, None, None
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint, with_state=True)
        model.load_state_dict(ckpt.model)
        if ema is not None and ckpt.ema is not None:
            ema.load_state_dict(ckpt.ema)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        start_epoch, step = int(ckpt.state["epoch"]), int(ckpt.state["step"])
        best, best_epoch = ckpt.state.get("best"), ckpt.state.get("best_epoch")
        if info.is_main:
            source = f" from {checkpoint}" if resume_from is not None else ""
            logger.info(f"resuming {run_dir} after epoch {start_epoch} (step {step}){source}")
    if start_epoch >= cfg.train.epochs and info.is_main:
        logger.info(f"{run_dir}: all {cfg.train.epochs} epochs are done; nothing to train")

    amp, amp_reason = resolve_amp(cfg.train.amp, device)
    if info.is_main:
        logger.info(f"precision: {'float32' if amp == 'none' else amp} ({amp_reason})")
    autocast = autocast_context(amp, device, recast_weights=cfg.train.recast_weights)
    loss_module = _LossModule(task, model, device, autocast)
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        loss_module = DistributedDataParallel(loss_module, device_ids=ids, find_unused_parameters=True)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    sampler = (
        DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=cfg.train.seed, drop_last=drop_last)
        if info.enabled
        else None
    )
    accumulation = GradientAccumulation(model, cfg.train.accum_steps, info.enabled,
                                        drop_last=len(train_set) >= cfg.train.batch_size * cfg.train.accum_steps)
    iters_per_epoch = accumulation.optimizer_steps(_iterations(len(train_set), cfg.train.batch_size, drop_last))
    total_steps = cfg.train.epochs * iters_per_epoch
    warmup_steps = cfg.train.warmup_epochs * iters_per_epoch

    epochs_run = 0
    for epoch in range(start_epoch, cfg.train.epochs):
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
        torch.manual_seed(cfg.train.seed * 100_003 + epoch)
        base = train_set.dataset if isinstance(train_set, Subset) else train_set
        if hasattr(base, "set_epoch"):
            base.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
            loader_sampler = sampler
        else:
            generator = torch.Generator().manual_seed(cfg.train.seed * 7919 + epoch)
            loader_sampler = RandomSampler(train_set, generator=generator)
        loader = DataLoader(
            train_set,
            batch_size=per_rank_batch,
            sampler=loader_sampler,
            drop_last=drop_last,
            collate_fn=task.collate,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",  # page-locked batches: the copies below overlap the GPU's work
        )
        model.train()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        running: dict[str, float] = {}
        seen, tic, micro_batches = 0, time.time(), accumulation.usable(len(loader))
        for index, batch in enumerate(bar):
            if index >= micro_batches:
                break
            if accumulation.opens(index):
                step_tic = time.perf_counter()
                lr = lr_at(step, cfg.train.lr, warmup_steps, total_steps, cfg.train.eta_min)
                set_lr(optimizer, lr)  # times each group's lr_mult (asl.gauss_lr_mult)
                # free the previous step's gradients before the forward, not after it: at the size of
                # the release that keeps 0.8 GiB of gradients from coexisting with the activations
                optimizer.zero_grad(set_to_none=True)
                sums: dict[str, float] = {}
            closing = accumulation.closes(index, micro_batches)
            with accumulation.sync_context(loss_module, closing):  # DDP all-reduces on the closing micro-batch
                losses = loss_module(batch)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise EgoaslError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}: lower train.lr or check the data")
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            if not closing:
                continue
            factor = accumulation.finish()
            if scaler is not None:
                scaler.unscale_(optimizer)
            accumulation.scale_gradients(model, factor)
            if cfg.train.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if ema is not None:
                ema.update(model)
            switched = contention.after_step(time.perf_counter() - step_tic)
            if switched and info.is_main:
                logger.info(switched)
            step += 1
            seen += 1
            step_losses = accumulation.step_losses(sums, factor)
            for key, value in step_losses.items():
                running[key] = running.get(key, 0.0) + value
            bar.set_postfix(loss=f"{running['loss'] / seen:.4f}", lr=f"{lr:.2e}", it_s=f"{seen / (time.time() - tic):.2f}")
            log.log({"epoch": epoch + 1, "step": step, "lr": lr, **step_losses}, step, "train")
        bar.close()
        epochs_run += 1

        eval_model = ema.module if ema is not None else model
        evaluated: EvalResult | None = None
        if evaluation_due(epoch + 1, cfg.train.epochs, cfg.train.eval_start_epoch, cfg.train.eval_every) and info.is_main:
            evaluated = task.evaluate(eval_model, cfg.data.val_split, device, progress)
            last_metrics = evaluated.metrics
            log.log({"epoch": epoch + 1, "step": step, "split": cfg.data.val_split, **evaluated.metrics}, step, "val")
        if info.is_main:
            _log_sensitivity(log, model, step, epoch + 1)
            improved = evaluated is not None and (best is None or evaluated.main > best)
            if improved:
                best, best_epoch = evaluated.main, epoch + 1
            state = {"optimizer": optimizer.state_dict(), "epoch": epoch + 1, "step": step, "best": best, "best_epoch": best_epoch}
            meta = {"epoch": epoch + 1, "step": step, "task": task.name}
            if evaluated is not None:
                meta[task.main_metric] = evaluated.main
            weights = Checkpoint(model.state_dict(), ema.state_dict() if ema is not None else None, meta, state)
            save_checkpoint(ckpt_dir, "last", weights)
            if improved:
                save_checkpoint(ckpt_dir, "best", Checkpoint(weights.model, weights.ema, meta))
                task.write_predictions(evaluated, run_dir / "predictions", cfg.data.val_split)
            line = epoch_line(epoch + 1, cfg.train.epochs, {k: v / max(seen, 1) for k, v in running.items()}, seen,
                              time.time() - tic, peak_memory_gib(device), evaluated.metrics if evaluated else None,
                              cfg.data.val_split, task.main_metric)
            logger.info(line + (" (best)" if improved else ""))
        distributed.barrier(info)
    log.close()
    distributed.teardown(info)
    if info.is_main:
        best_text = f"best {task.main_metric} {best:.2f} at epoch {best_epoch}" if best is not None else "no evaluation"
        logger.info(f"finished: {epochs_run} epochs in {time.time() - started:.0f} s, {step} steps in all; {best_text}")
    return TrainSummary(run_dir, epochs_run, step, best, best_epoch, last_metrics, time.time() - started)


def evaluation_due(epoch: int, epochs: int, start: int, every: int) -> bool:
    """Whether 1-based ``epoch`` ends with an evaluation: from ``start`` on, every ``every``
    epochs counted from ``start``, and always after the last epoch (``start`` < 0: never)."""
    if start < 0 or epoch < start:
        return False
    return (epoch - max(start, 1)) % max(every, 1) == 0 or epoch == epochs


def _iterations(n_items: int, batch_size: int, drop_last: bool) -> int:
    return n_items // batch_size if drop_last else math.ceil(n_items / batch_size)


def _log_start(logger: logging.Logger, cfg: Config, run_dir: Path, command: str, reference: Config | None,
               device: torch.device, info: distributed.DistInfo) -> None:
    """The head of a training call's log: what was run, where, and how the config differs from its preset."""
    if command:
        logger.info(f"command: {command}")
    logger.info(f"run folder {run_dir}: {cfg.data.task.upper()} config {cfg.name!r} on {device}, "
                f"{info.world_size} process(es), batch {cfg.train.batch_size} x {cfg.train.accum_steps} accumulation steps")
    if cfg.data.resize:
        logger.info(f"input: every clip resized to {cfg.data.max_seq_len} cells, data.resize_mode={cfg.data.resize_mode} "
                    f"({RESIZE_MODE_MEANING[cfg.data.resize_mode]})")
    if reference is not None:
        changes = config_changes(reference, cfg)
        differences = ", ".join(str(c) for c in changes) if changes else "none"
        logger.info(f"config differences from its preset: {differences}")


def _log_sensitivity(log: MetricsLog, model: nn.Module, step: int, epoch: int) -> None:
    """Histograms of the ASL per-class mu/sigma and their spread across classes (``asl/*_std`` in
    metrics.jsonl and TensorBoard), so that a collapse, or Gaussians that never become class-aware, is visible."""
    spread = gaussian_spread(model)
    if spread:
        log.log({"epoch": epoch, "step": step, "asl": spread}, step, "train")
    getter = getattr(model, "sensitivity_parameters", None)
    if getter is None:
        return
    for name, values in getter().items():
        log.histogram(f"asl/{name}", values, step)
