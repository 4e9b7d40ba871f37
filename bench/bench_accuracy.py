"""Accuracy at demo size on a harder synthetic setting, against a peer: mean ± std over seeds.

For each seed ``s`` a dataset is generated with ``egoasl synth --scale demo --difficulty hard
--classes 16 --videos 40 --clip-seconds 480 480 --seed s`` (onset/centre/offset-heavy classes,
overlapping prototypes, 3x noise, 0.8 s annotator jitter; 48 train clips of 480 s with ~340
instances, like the issue's independent dataset), then every system is trained with training seed ``s`` at the size and
budget of ``demo/mq`` (width 64, 6 levels, 256 cells, 40 epochs, batch 4, lr 1e-3, EMA 0.99) and
scored on val with the official-equivalent metric (average mAP over tIoU 0.1-0.5, Recall@1x at
tIoU 0.5). Each system runs with the input resized by linear interpolation and by area averaging
(``data.resize_mode``); the clips hold ~900 vectors for 256 cells, so this is a down-sampling.

Systems (egoasl overrides on top of ``demo/mq``):

- ``asl``: the demo recipe (class-aware Gaussians, al_loss);
- ``asl_shared``: one Gaussian shared by all classes (``asl.class_aware=false``);
- ``no_asl``: constant weights (``asl.class_gaussians=false asl.al_weight=0``);
- ``plain``: also without channel attention and the relative-position layer;
- ``actionformer``: ActionFormer's reference code through ``bench/peer/actionformer_harness.py``
  (needs the peer checkout: ``--peer DIR`` or ``$ACTIONFORMER_DIR``; see ``bench/peer/README.md``).

Extra systems are ``NAME=KEY=VALUE,KEY=VALUE`` on the command line (``--extra``). A system
written ``NAME@MODE`` runs with input resize ``MODE`` only (``asl@linear``), whatever ``--resize``
says. A run that fails is reported as failed and the others go on. The spread of
the learnt per-class Gaussians (std across classes of mu/sigma) is reported for ASL systems.

    python bench/bench_accuracy.py                                  # everything, 3 seeds; appends to RESULTS.md
    python bench/bench_accuracy.py --systems asl,no_asl --resize area --seeds 0
    python bench/bench_accuracy.py --jobs 14          # 14 trainings at a time (one thread each) on a 16-core machine
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import append_section, cpu_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SYSTEMS = {
    "asl": [],
    "asl_shared": ["asl.class_aware=false"],
    "no_asl": ["asl.class_gaussians=false", "asl.al_weight=0"],
    "plain": ["asl.class_gaussians=false", "asl.al_weight=0", "model.channel_attention=false",
              "model.rel_global_layer=false"],
    "actionformer": None,  # the peer
}


def train_egoasl(data: Path, work: Path, overrides: list[str], seed: int, threads: int) -> dict:
    """Train ``demo/mq`` with ``overrides`` on ``data``; val metrics and the Gaussians' spread."""
    import torch

    from egoasl.config import load_config
    from egoasl.engine.tasks import build_task
    from egoasl.engine.train import train
    from egoasl.model.sensitivity import gaussian_spread

    torch.set_num_threads(threads)
    cfg = load_config("demo/mq", [f"data.root={data}", f"train.seed={seed}", f"train.threads={threads}", *overrides])
    cfg.train.eval_start_epoch = cfg.train.epochs  # one evaluation, after the last epoch
    task = build_task(cfg, work)
    tic = time.perf_counter()
    summary = train(cfg, task, work, progress=False)
    seconds = time.perf_counter() - tic
    metrics = summary.last_metrics
    if metrics is None:  # the run folder held a finished run: score its EMA weights
        from egoasl.engine.runs import load_run

        _, task, ema_model = load_run(work, "last")
        metrics = task.evaluate(ema_model, cfg.data.val_split, torch.device("cpu"), progress=False).metrics
    model = task.build_model()
    from egoasl.io.checkpoint import load_checkpoint, weights_path

    model.load_state_dict(load_checkpoint(weights_path(work / "checkpoints", "last")).model)
    spread = gaussian_spread(model)
    return {"avg_map": metrics["average_mAP"], "r1x_05": metrics["recall"]["1x@0.5"],
            "seconds": seconds, "spread": spread}


def make_data(root: Path, seed: int, classes: int, difficulty: str, videos: int, clip_seconds: float) -> Path:
    from egoasl.data.synthetic import generate_synthetic

    data = root / f"data_{difficulty}_c{classes}_v{videos}_{clip_seconds:g}s_s{seed}"
    if not (data / "synthetic.json").is_file():  # written in a side folder, renamed when complete
        partial = data.with_name(data.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        generate_synthetic(partial, seed=seed, scale="demo", classes=classes, difficulty=difficulty, videos=videos,
                           clip_seconds=(clip_seconds, clip_seconds))
        shutil.rmtree(data, ignore_errors=True)
        partial.rename(data)
    return data


def run_one(system: str, extra: dict[str, list[str]], data: Path, work: Path, resize: str, seed: int, classes: int,
            threads: int, peer: str | None, epochs: int) -> dict:
    overrides = [f"data.resize_mode={resize}", f"model.num_classes={classes}", f"train.epochs={epochs}"]
    if system == "actionformer":
        sys.path.insert(0, str(HERE / "peer"))
        from actionformer_harness import run_actionformer

        result = run_actionformer(data, resize, seed, work, peer_dir=peer, config_overrides=overrides[1:],
                                  threads=threads)
        return {"avg_map": result["avg_map"], "r1x_05": result["r1x_05"], "seconds": result.get("seconds")}
    return train_egoasl(data, work, overrides + extra.get(system, SYSTEMS.get(system) or []), seed, threads)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="asl,asl_shared,no_asl,plain,actionformer")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=K=V,K=V",
                        help="an extra egoasl system: its name and comma-separated overrides")
    parser.add_argument("--resize", default="linear,area", help="comma-separated data.resize_mode values")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--difficulty", default="hard", choices=["normal", "hard"])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--clip-seconds", type=float, default=480.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    parser.add_argument("--peer", default=os.environ.get("ACTIONFORMER_DIR"), help="ActionFormer checkout")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_accuracy"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (demo/mq: 40)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at the same time, each in its own process")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON of one run, in a child process
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        result = run_one(job["system"], {job["system"]: job["extra"]} if job["extra"] is not None else {},
                         Path(job["data"]), Path(job["work"]), job["resize"], job["seed"], job["classes"],
                         job["threads"], job["peer"], job["epochs"])
        print(json.dumps(result))
        return

    extra = {}
    for item in args.extra:
        name, _, overrides = item.partition("=")
        extra[name] = [x for x in overrides.split(",") if x]
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s.partition("@")[0] not in SYSTEMS and s.partition("@")[0] not in extra]
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)} (or give --extra NAME=...)")
    seeds = [int(s) for s in args.seeds.split(",")]
    resizes = args.resize.split(",")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    jobs = []
    for seed in seeds:
        data = make_data(args.work, seed, args.classes, args.difficulty, args.videos, args.clip_seconds)
        for entry in systems:
            system, _, only = entry.partition("@")
            for resize in [only] if only else resizes:
                jobs.append({"system": system, "extra": extra.get(system), "data": str(data), "resize": resize,
                             "seed": seed, "work": str(args.work / f"{system}_{resize}_s{seed}"),
                             "classes": args.classes, "threads": args.threads, "peer": args.peer,
                             "epochs": args.epochs})

    def launch(job: dict) -> dict | None:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        name = f"{job['system']} {job['resize']} seed {job['seed']}"
        if proc.returncode != 0:
            print(f"FAILED {name}:\n{proc.stderr[-2000:]}", flush=True)
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps({"system": job["system"], "resize": job["resize"], "seed": job["seed"], **result}), flush=True)
        return result

    results: dict[tuple[str, str], list[dict]] = {}
    failed = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for job, result in zip(jobs, pool.map(launch, jobs)):
            if result is None:
                failed.append(f"{job['system']}@{job['resize']} seed {job['seed']}")
            else:
                results.setdefault((job["system"], job["resize"]), []).append(result)
    rows = []
    for (system, resize), runs in results.items():
        spread = ""
        if runs[0].get("spread"):
            mu = [r["spread"]["mu_cls_std"] for r in runs]
            sigma = [r["spread"]["sigma_cls_std"] for r in runs]
            mu_loc = [r["spread"]["mu_loc_start_std"] for r in runs]
            spread = f"{statistics.mean(mu):.3f} / {statistics.mean(sigma):.3f} / {statistics.mean(mu_loc):.3f}"
        overrides = " ".join(extra.get(system, SYSTEMS.get(system) or [])) or ("peer" if system == "actionformer" else "-")
        rows.append(f"| {system} | {resize} | {len(runs)} | {mean_std([r['avg_map'] for r in runs])} | "
                    f"{mean_std([r['r1x_05'] for r in runs])} | {spread or '-'} | `{overrides}` |")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""
## Accuracy at demo size, {args.difficulty} synthetic data, {len(seeds)} seed(s) (`bench/bench_accuracy.py`), {now}

- machine: {os.cpu_count()} CPUs, {cpu_model()}; {args.threads} torch thread(s) per training, {args.jobs} training(s) at a time; 1-min load {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {time.perf_counter() - started:.0f} s in all
- command: `python bench/bench_accuracy.py --systems {args.systems} --resize {args.resize} --seeds {args.seeds} --classes {args.classes} --difficulty {args.difficulty} --epochs {args.epochs} --jobs {args.jobs} --videos {args.videos} --clip-seconds {args.clip_seconds:g}{''.join(f' --extra {e}' for e in args.extra)}`
- data: `egoasl synth --scale demo --difficulty {args.difficulty} --classes {args.classes} --videos {args.videos} --clip-seconds {args.clip_seconds:g} {args.clip_seconds:g} --seed S` for each seed S; val split; training seed S
- budget: `demo/mq` (width 64, 6 levels, 256 cells, {args.epochs} epochs, batch 4, lr 1e-3, EMA 0.99) for every system
- Gaussian spread = std across classes of the learnt mu_cls / sigma_cls / mu_loc_start (0 = every class alike), mean over seeds

| system | input resize | seeds | avg mAP (mean ± std) | R@1x@0.5 | Gaussian spread | overrides |
|---|---|---:|---:|---:|---:|---|
{chr(10).join(rows)}
"""
    if failed:
        section += f"\nFailed runs (left out above): {', '.join(failed)}\n"
    append_section(args.results, section)


if __name__ == "__main__":
    main()
