"""`egoasl predict`: a run's predictions for a whole split, or for one new video."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from egoasl.errors import EgoaslError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict a split (submission file + raw outputs) or one video given its feature files",
        description=(
            "With --split: writes <out>/<split>_submission.json (challenge format), the raw outputs for "
            "MQ ensembling (<out>/<split>_raw.safetensors) and, when the split is annotated, <split>_metrics.json. "
            "With --features: predicts one clip from its feature files (one per config source, in config order). "
            "KEY=VALUE arguments override the run's config.yaml (a moved data folder, other test settings)."
        ),
    )
    parser.add_argument("run", type=Path, help="run folder of `egoasl train`")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the run's config, as on train (data.root=/moved test.nms_sigma=0.5)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--split", help="val or test (or train)")
    what.add_argument("--features", nargs="+", type=Path, help="feature files of one clip, one per source")
    parser.add_argument("--checkpoint", default="best", help="best (default, falls back to last) or last")
    parser.add_argument("--out", type=Path, help="output folder (--split; default RUN/predictions) or file .json/.csv (--features)")
    parser.add_argument("--duration", type=float, help="clip duration in seconds (--features; default: from the first source)")
    parser.add_argument("--plot", type=Path, help="timeline PNG of the top classes (--features)")
    parser.add_argument("--ground-truth", type=Path, help="annotation file holding the clip, drawn on the plot (with --clip-uid)")
    parser.add_argument("--clip-uid", help="the clip's uid in --ground-truth")
    parser.add_argument("--top", type=int, default=0, help="keep only the N best predictions (--features; 0 = all)")
    parser.add_argument("--query", help="NLQ --features: the question to answer")
    parser.add_argument("--query-features", type=Path, help="NLQ --features: the question's token features [L, text_dim]")
    parser.add_argument("--text-encoder", default="clip", choices=["clip", "sentence-transformers", "hashed"],
                        help="NLQ --query: the encoder the run's text features were made with (default clip)")
    parser.add_argument("--text-weights", help="NLQ --query: local folder of the text encoder's weights")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-raw", action="store_true", help="do not save raw outputs (--split)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egoasl.engine.distributed import DistInfo, resolve_device
    from egoasl.engine.host_memory import keep_freed_heap_memory
    from egoasl.engine.runs import load_run

    device = resolve_device(args.device, DistInfo())
    if device.type == "cpu":
        keep_freed_heap_memory()  # each batch re-allocates the last one's activations: no page faults (full size: 0.2 s per clip)
    cfg, task, model = load_run(args.run, args.checkpoint, device, overrides=args.overrides)
    if args.split:
        return _predict_split(args, cfg, task, model, device)
    return _predict_features(args, cfg, task, model, device)


def _predict_split(args, cfg, task, model, device) -> int:
    from egoasl.engine.run_lock import run_lock

    out_dir = args.out or args.run / "predictions"
    if out_dir.resolve().is_relative_to(args.run.resolve()):  # writing into the run: not while a training holds it
        with run_lock(args.run, f"egoasl predict --split {args.split}"):
            return _write_split(args, cfg, task, model, device, out_dir)
    return _write_split(args, cfg, task, model, device, out_dir)


def _write_split(args, cfg, task, model, device, out_dir: Path) -> int:
    from egoasl.engine.ensemble import save_raw_outputs
    from egoasl.engine.run_log import show_progress

    keep_raw = cfg.data.task == "mq" and not args.no_raw
    progress = show_progress(not args.no_progress)
    if keep_raw:
        result = task.evaluate(model, args.split, device, progress, keep_raw=True)
    else:
        result = task.evaluate(model, args.split, device, progress)
    written = task.write_predictions(result, out_dir, args.split)
    if keep_raw:
        raw_path = out_dir / f"{args.split}_raw.safetensors"
        save_raw_outputs(raw_path, result.raw_outputs, metadata={"split": args.split, "labels": task.taxonomy.labels})
        written.append(raw_path)
    if result.metrics:
        print(json.dumps({k: v for k, v in result.metrics.items() if not isinstance(v, list)}, indent=1))
    for path in written:
        print(f"wrote {path}")
    return 0


def _predict_features(args, cfg, task, model, device) -> int:
    """One clip's moments (MQ) or one question's windows (NLQ): :class:`egoasl.api.Run`'s methods."""
    from egoasl.api import Run

    run = Run(args.run, cfg, task, model, device)
    if cfg.data.task == "nlq":
        return _answer_query(args, run)
    found = run.predict_clip(*args.features, duration=args.duration, top=args.top)
    moments = [m.to_dict() for m in found]
    duration = args.duration or run.default_duration(args.features[0])
    out_path = args.out or Path(args.features[0].stem + "_moments.json")
    _write_moments(out_path, moments, duration)
    print(f"{len(moments)} moments in {duration:.1f} s; wrote {out_path}")
    for m in found[:5]:
        print(f"  {m.score:.3f}  {m.start:8.2f} - {m.end:8.2f} s  {m.label}")
    if args.plot:
        from egoasl.viz import plot_timeline

        gt = _ground_truth(args.ground_truth, args.clip_uid) if args.ground_truth else None
        plot_timeline(args.plot, moments, duration, gt, title=args.features[0].name)
        print(f"wrote {args.plot}")
    return 0


def _answer_query(args, run) -> int:
    if not args.query and not args.query_features:
        raise EgoaslError("an NLQ run answers a question: give --query TEXT or --query-features FILE")
    windows = run.answer(*args.features, query=args.query, query_features=args.query_features,
                         duration=args.duration, text_encoder=args.text_encoder, text_weights=args.text_weights)
    answer = {
        "query": args.query or str(args.query_features),
        "duration": args.duration or run.default_duration(args.features[0]),
        "windows": [w.to_dict() for w in windows],
    }
    out_path = args.out or Path(args.features[0].stem + "_answer.json")
    from egoasl.io.atomic import write_text_atomic

    write_text_atomic(out_path, json.dumps(answer, indent=1, ensure_ascii=False))
    print(f"top {len(windows)} windows for {answer['query']!r}:")
    for w in windows:
        print(f"  {w.score:.3f}  {w.start:8.2f} - {w.end:8.2f} s")
    print(f"wrote {out_path}")
    return 0


def _write_moments(path: Path, moments: list[dict], duration: float) -> None:
    from egoasl.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["label", "score", "start_sec", "end_sec"])
                for m in moments:
                    writer.writerow([m["label"], f"{m['score']:.6f}", f"{m['segment'][0]:.3f}", f"{m['segment'][1]:.3f}"])
        else:
            tmp.write_text(json.dumps({"duration": duration, "moments": moments}, indent=1, ensure_ascii=False), encoding="utf-8")


def _ground_truth(path: Path, clip_uid: str | None) -> list[dict]:
    from egoasl.data.mq_formats import load_mq_file

    if not clip_uid:
        raise EgoaslError("--ground-truth needs --clip-uid to pick the clip")
    annotations = load_mq_file(path, training_taxonomy=False)
    if clip_uid not in annotations.clips:
        raise EgoaslError(f"{path}: no clip {clip_uid!r}")
    return [{"label": i.label, "segment": [i.start, i.end]} for i in annotations.clips[clip_uid].instances]
