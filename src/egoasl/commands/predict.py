"""`egoasl predict`: a run's predictions for a whole split, or for one new video."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from egoasl.errors import EgoaslError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict a split (submission file + raw outputs) or one video given its feature files",
        description=(
            "With --split: writes <out>/<split>_submission.json (challenge format), the raw outputs for "
            "MQ ensembling (<out>/<split>_raw.safetensors) and, when the split is annotated, <split>_metrics.json. "
            "With --features: predicts one clip from its feature files (one per config source, in config order)."
        ),
    )
    parser.add_argument("run", type=Path, help="run folder of `egoasl train`")
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
    from egoasl.engine.runs import load_run

    device = resolve_device(args.device, DistInfo())
    cfg, task, model = load_run(args.run, args.checkpoint, device)
    if args.split:
        return _predict_split(args, cfg, task, model, device)
    return _predict_features(args, cfg, task, model, device)


def _predict_split(args, cfg, task, model, device) -> int:
    from egoasl.engine.ensemble import save_raw_outputs

    out_dir = args.out or args.run / "predictions"
    keep_raw = cfg.data.task == "mq" and not args.no_raw
    progress = not args.no_progress
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


def _clip_inputs(args, cfg) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Feature files of one clip -> padded ``feats (1, C, T)``, ``masks (1, T)`` and the grid meta."""
    from egoasl.data.features import align_sources, load_feature_file, slice_video_features

    sources = cfg.data.sources
    if len(args.features) != len(sources):
        names = ", ".join(f"{s.name} ({s.dim})" for s in sources)
        raise EgoaslError(f"--features: this run needs {len(sources)} files, one per source in order: {names}")
    tensors = [load_feature_file(path, expected_dim=s.dim) for path, s in zip(args.features, sources)]
    duration = args.duration or tensors[0].shape[0] / sources[0].rate
    loaded = []
    for rows, source, path in zip(tensors, sources, args.features):
        if source.layout == "video":
            loaded.append(slice_video_features(rows, 0.0, duration, step=1.0 / source.rate, source=path))
        else:
            loaded.append((rows, 0.5 / source.rate))
    clip = align_sources(loaded, cfg.data, duration)
    feats = torch.zeros(1, clip.feats.shape[0], cfg.data.max_seq_len)
    feats[0, :, : clip.feats.shape[1]] = clip.feats
    masks = torch.zeros(1, cfg.data.max_seq_len, dtype=torch.bool)
    masks[0, : clip.feats.shape[1]] = True
    return feats, masks, {"grid_step": clip.grid.step, "grid_offset": clip.grid.offset, "duration": duration}


def _predict_features(args, cfg, task, model, device) -> int:
    from egoasl.engine.ensemble import raw_output_of

    feats, masks, meta = _clip_inputs(args, cfg)
    if cfg.data.task == "nlq":
        return _answer_query(args, cfg, task, model, device, feats, masks, meta)
    with torch.no_grad():
        out = model(feats.to(device), masks.to(device))
    moments = task.decode(raw_output_of(out, 0), meta)
    if args.top > 0:
        moments = moments[: args.top]
    duration = meta["duration"]
    out_path = args.out or Path(args.features[0].stem + "_moments.json")
    _write_moments(out_path, moments, duration)
    print(f"{len(moments)} moments in {duration:.1f} s; wrote {out_path}")
    for m in moments[:5]:
        print(f"  {m['score']:.3f}  {m['segment'][0]:8.2f} - {m['segment'][1]:8.2f} s  {m['label']}")
    if args.plot:
        from egoasl.viz import plot_timeline

        gt = _ground_truth(args.ground_truth, args.clip_uid) if args.ground_truth else None
        plot_timeline(args.plot, moments, duration, gt, title=args.features[0].name)
        print(f"wrote {args.plot}")
    return 0


def _query_tokens(args, cfg) -> torch.Tensor:
    """The question's token features ``[L, text_dim]``: from --query-features, or --query encoded."""
    from egoasl.data.features import load_feature_file

    if args.query_features:
        tokens = load_feature_file(args.query_features, expected_dim=cfg.data.text_dim)
    elif args.query:
        from egoasl.data.text_encoders import build_text_encoder

        encoder = build_text_encoder(args.text_encoder, args.text_weights, dim=cfg.data.text_dim)
        if encoder.dim != cfg.data.text_dim:
            raise EgoaslError(f"--text-encoder {args.text_encoder} gives {encoder.dim}-d tokens; this run was trained on "
                              f"{cfg.data.text_dim}-d text features (data.text_dim): use the encoder that made them")
        tokens = encoder.encode([args.query], cfg.data.max_text_len)[0]
    else:
        raise EgoaslError("an NLQ run answers a question: give --query TEXT or --query-features FILE")
    return tokens[: cfg.data.max_text_len]


def _answer_query(args, cfg, task, model, device, feats, masks, meta) -> int:
    from egoasl.engine.ensemble import raw_output_of

    tokens = _query_tokens(args, cfg)
    text_masks = torch.ones(1, tokens.shape[0], dtype=torch.bool)
    with torch.no_grad():
        out = model(feats.to(device), masks.to(device), tokens[None].to(device), text_masks.to(device))
    windows = task.decode(raw_output_of(out, 0), meta)
    answer = {
        "query": args.query or str(args.query_features),
        "duration": meta["duration"],
        "windows": [{"start": w.start, "end": w.end, "score": w.score} for w in windows],
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
    from egoasl.data.ego4d import load_mq_annotations

    if not clip_uid:
        raise EgoaslError("--ground-truth needs --clip-uid to pick the clip")
    annotations = load_mq_annotations(path)
    if clip_uid not in annotations.clips:
        raise EgoaslError(f"{path}: no clip {clip_uid!r}")
    return [{"label": i.label, "segment": [i.start, i.end]} for i in annotations.clips[clip_uid].instances]
