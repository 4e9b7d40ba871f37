"""`egoasl ensemble`: combine several models.

MQ (the report's ensemble): every member run is predicted with its OWN config; their raw
outputs (pre-sigmoid class logits and stride-unit offsets per level) are mean-pooled clip by
clip, then decoded once with the first member's test settings. Members' saved raw outputs
(``RUN/predictions/<split>_raw.safetensors`` from ``egoasl predict RUN --split``) are reused;
missing ones are computed and saved first. KEY=VALUE arguments override every member's
config, as on train: a moved data folder (``data.root=...``) or other decoding settings
(``test.nms_sigma=0.5``, applied to the pooled raw outputs, so saved ones are re-decoded).

NLQ (merging with another model, e.g. a NaQ-trained one): the candidate windows of several
submissions are pooled per query, sorted by score and cut to the top 5.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from egoasl.errors import EgoaslError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ensemble",
        help="MQ: mean-pool the raw outputs of several runs; NLQ: merge several submissions by score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("members", nargs="+", metavar="MEMBER [KEY=VALUE]",
                        help="MQ: run folders, then overrides of every member's config as on train "
                             "(data.root=/moved test.nms_sigma=0.5); NLQ: submission JSON files")
    parser.add_argument("--task", choices=["mq", "nlq"], default="mq")
    parser.add_argument("--out", type=Path, required=True, help="MQ: output folder; NLQ: output JSON file")
    parser.add_argument("--split", default="val", help="MQ: split to predict (val or test)")
    parser.add_argument("--checkpoint", default="best", help="MQ: members' checkpoint (best or last)")
    parser.add_argument("--annotations", type=Path, help="NLQ: annotation file to score the merge against")
    parser.add_argument("--top-k", type=int, default=5, help="NLQ: windows kept per query")
    parser.add_argument("--nms-sigma", type=float, help="NLQ: Soft-NMS sigma on the pooled windows (default: none)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    args.overrides = [*args.overrides, *(m for m in args.members if "=" in m and not Path(m).exists())]
    args.members = [Path(m) for m in args.members if m not in args.overrides]
    if args.task == "nlq":
        if args.overrides:
            raise EgoaslError(f"{args.overrides[0]}: NLQ merging reads submission files; KEY=VALUE overrides are for MQ runs")
        return _merge_nlq(args)
    return _ensemble_mq(args)


def _member_raw(run_dir: Path, args, device) -> tuple[dict, list[str]]:
    """A member's raw outputs on the split (saved ones, else computed with its own config)."""
    from egoasl.engine.ensemble import load_raw_metadata, load_raw_outputs, save_raw_outputs
    from egoasl.engine.run_log import show_progress
    from egoasl.engine.runs import load_run

    path = run_dir / "predictions" / f"{args.split}_raw.safetensors"
    if path.is_file():
        labels = load_raw_metadata(path).get("labels")
        if labels:
            print(f"{run_dir}: reusing {path}")
            return load_raw_outputs(path), labels
    cfg, task, model = load_run(run_dir, args.checkpoint, device, overrides=args.overrides)
    if cfg.data.task != "mq":
        raise EgoaslError(f"{run_dir}: an {cfg.data.task.upper()} run; `egoasl ensemble` mean-pools MQ runs (use --task nlq to merge NLQ submissions)")
    print(f"{run_dir}: predicting {args.split} with its own config")
    _, raw = task.predict(model, args.split, device, progress=show_progress(not args.no_progress), keep_raw=True)
    save_raw_outputs(path, raw, metadata={"split": args.split, "labels": task.taxonomy.labels})
    return raw, task.taxonomy.labels


def _ensemble_mq(args) -> int:
    from egoasl.engine.annotations import mq_clips
    from egoasl.engine.distributed import DistInfo, resolve_device
    from egoasl.engine.ensemble import mean_raw_outputs
    from egoasl.engine.host_memory import keep_freed_heap_memory
    from egoasl.engine.runs import load_run
    from egoasl.engine.task import EvalResult
    from egoasl.metrics.mq import evaluate_mq

    device = resolve_device(args.device, DistInfo())
    if device.type == "cpu":
        keep_freed_heap_memory()  # as `egoasl predict`: members predicted here re-allocate each batch's activations
    members = [_member_raw(run_dir, args, device) for run_dir in args.members]
    labels = members[0][1]
    for run_dir, (_, other) in zip(args.members[1:], members[1:]):
        if other != labels:
            raise EgoaslError(f"{run_dir}: its taxonomy differs from {args.members[0]}'s; members must share one class list")
    clip_sets = [set(raw) for raw, _ in members]
    if any(s != clip_sets[0] for s in clip_sets):
        raise EgoaslError(f"members predicted different clips of {args.split}; predict every member on the same split")
    cfg, task, _ = load_run(args.members[0], args.checkpoint, overrides=args.overrides)
    names = [str(m) for m in args.members]
    detections = {}
    for clip_uid in members[0][0]:
        mean = mean_raw_outputs([raw[clip_uid] for raw, _ in members], names)
        detections[clip_uid] = task.decode(mean, mean["meta"])
    clips = mq_clips(cfg, args.split)
    metrics = evaluate_mq(clips, detections, tious=cfg.test.tious).to_json() if any(c.instances for c in clips) else {}
    result = EvalResult(metrics=metrics, main=metrics.get("average_mAP", float("nan")), submission=detections)
    written = task.write_predictions(result, args.out, args.split)
    if metrics:
        print(f"ensemble of {len(members)} runs on {args.split}: average mAP {metrics['average_mAP']:.2f}, "
              f"Recall@1x tIoU 0.5 {metrics['recall']['1x@0.5']:.2f}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _merge_nlq(args) -> int:
    from egoasl.engine.nlq_merge import merge_nlq_predictions, prediction_entries, read_member, write_nlq_predictions

    members = [read_member(path) for path in args.members]
    merged = merge_nlq_predictions(members, top_k=args.top_k, nms_sigma=args.nms_sigma)
    queries = None
    if args.annotations:
        from egoasl.data.ego4d import load_nlq_annotations

        queries = load_nlq_annotations(args.annotations).queries
    written = write_nlq_predictions(args.out, merged, queries=queries, num_windows=args.top_k)
    print(f"merged {len(args.members)} submissions: {len(merged)} queries, top {args.top_k} windows each")
    if queries is not None and all(q.start is not None for q in queries):
        from egoasl.metrics.nlq import evaluate_nlq

        result = evaluate_nlq(queries, prediction_entries(merged))
        print(json.dumps(result.to_json(), indent=1))
    for path in written:
        print(f"wrote {path}")
    return 0
