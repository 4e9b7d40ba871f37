"""`egoasl text encode`: write token-wise query features for an NLQ annotation file."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from egoasl.io.atomic import write_atomic


def register(subparsers) -> None:
    parser = subparsers.add_parser("text", help="NLQ query text features")
    sub = parser.add_subparsers(dest="text_command", metavar="SUBCOMMAND", required=True)
    enc = sub.add_parser(
        "encode",
        help="encode every query of NLQ annotation files into <out>/<clip_uid>/<annotation_uid>_<query_idx>.pt",
        description="Never downloads weights: clip and sentence-transformers read a local folder given with --weights.",
    )
    enc.add_argument("--annotations", nargs="+", required=True, type=Path, help="nlq_*.json files")
    enc.add_argument("--out", required=True, type=Path, help="output folder (data.text_features)")
    enc.add_argument("--encoder", default="clip", choices=["clip", "sentence-transformers", "hashed", "synthetic"])
    enc.add_argument("--weights", help="local folder with the encoder's weights (synthetic: the egoasl synth folder)")
    enc.add_argument("--max-tokens", type=int, default=48)
    enc.add_argument("--dim", type=int, default=768, help="feature size of the hashed encoder")
    enc.add_argument("--batch-size", type=int, default=64)
    enc.add_argument("--device", default="cpu")
    enc.add_argument("--overwrite", action="store_true", help="re-encode queries whose file exists")
    enc.set_defaults(func=encode)


def encode(args: argparse.Namespace) -> int:
    from egoasl.data.ego4d import load_nlq_annotations
    from egoasl.data.text_encoders import build_text_encoder, text_feature_path

    encoder = build_text_encoder(args.encoder, args.weights, args.device, args.dim)
    queries = [q for path in args.annotations for q in load_nlq_annotations(path).queries]
    todo = [q for q in queries if args.overwrite or not text_feature_path(args.out, *q.key).is_file()]
    for start in tqdm(range(0, len(todo), args.batch_size), desc="encode queries", unit="batch", disable=None):
        chunk = todo[start : start + args.batch_size]
        for query, feats in zip(chunk, encoder.encode([q.query for q in chunk], args.max_tokens)):
            write_atomic(text_feature_path(args.out, *query.key), lambda tmp, f=feats: torch.save(f.contiguous(), tmp))
    print(f"encoded {len(todo)} queries ({len(queries) - len(todo)} already present) into {args.out} with {args.encoder} (dim {encoder.dim})")
    return 0
