"""ActionFormer's reference code on an egoasl dataset, at egoasl's size and budget, scored by egoasl.

    python bench/peer/actionformer_harness.py --peer /work/peer/actionformer --data DIR --resize area --seed 0

One run: convert ``--data`` (an ``egoasl synth`` folder or any Ego4D-format MQ data root) into
ActionFormer's input with the features egoasl's ``--config`` feeds its own model
(``actionformer_convert``), write the peer's config at that config's size and budget, train and
predict in a child process (``actionformer_train``), write the val predictions as an official
Ego4D MQ submission and score it with ``egoasl eval mq --json``. Prints one JSON object.
``bench/peer/README.md`` says how to get and build the peer.

From Python (``bench/`` scripts put this folder on ``sys.path``)::

    from actionformer_harness import run_actionformer
    result = run_actionformer(data_dir, "area", seed, work_dir)  # {"avg_map", "r1x_05", "per_tiou", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from egoasl.data.ego4d import find_annotation_file
from egoasl.engine.annotations import data_path
from egoasl.errors import EgoaslError
from egoasl.io.atomic import write_text_atomic
from egoasl.io.submission import write_mq_submission

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # importable as bench/peer/actionformer_harness.py from any folder
    sys.path.insert(0, str(HERE))

from actionformer_convert import (
    RESIZE_MODES,
    apply_peer_overrides,
    convert_dataset,
    egoasl_config,
    peer_config,
    write_peer_config,
)

DEFAULT_PEER_ENV = "EGOASL_PEER_ACTIONFORMER"
"""Environment variable naming the peer checkout when ``peer_dir`` is not given."""
RECALL_KEY = "1x@0.5"


def _egoasl_command() -> list[str]:
    """``egoasl`` as the running interpreter runs it (no installed console script needed)."""
    return [sys.executable, "-m", "egoasl.cli"]


def _run(command: list[str], what: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run ``command`` and return its stdout; its output goes to ``log`` (written atomically) when given.

    Raises:
        EgoaslError: naming ``what``, with the end of its output, when it exits non-zero.
    """
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if log is not None:
        write_text_atomic(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-2000:]
        where = f" (full output in {log})" if log is not None else ""
        raise EgoaslError(f"{what} failed (exit {proc.returncode}){where}:\n{tail}")
    return proc.stdout


def _resolve_peer(peer_dir: str | Path | None) -> Path:
    if peer_dir is None:
        peer_dir = os.environ.get(DEFAULT_PEER_ENV)
        if not peer_dir:
            raise EgoaslError(f"no ActionFormer checkout: pass --peer or set {DEFAULT_PEER_ENV} (bench/peer/README.md)")
    peer = Path(peer_dir).resolve()
    if not (peer / "libs" / "core" / "config.py").is_file():
        raise EgoaslError(f"--peer {peer}: not an ActionFormer checkout (no libs/core/config.py); see bench/peer/README.md")
    return peer


def run_actionformer(
    data_dir: str | Path,
    resize: str,
    seed: int,
    work_dir: str | Path,
    *,
    peer_dir: str | Path | None = None,
    config: str = "demo/mq",
    config_overrides: list[str] | None = None,
    peer_overrides: list[str] | None = None,
    device: str = "cpu",
    threads: int = 1,
) -> dict:
    """Train and score ActionFormer on ``data_dir`` at the size and budget of the egoasl ``config``.

    Args:
        data_dir: an Ego4D-format MQ data root (e.g. written by ``egoasl synth``).
        resize: ``linear``, ``area`` or ``auto``: egoasl's ``data.resize_mode`` (its own resampling code).
        seed: the peer's ``init_rand_seed``.
        work_dir: folder for the converted data, the peer config, predictions and submission.
        peer_dir: the ActionFormer checkout; default ``$EGOASL_PEER_ACTIONFORMER``.
        config: the egoasl config (name or path) whose input, size and budget the peer gets.
        config_overrides: dotted ``KEY=VALUE`` overrides of that config.
        peer_overrides: ``section.key=value`` overrides of the peer's config (for bisecting).
        device: torch device for the peer; threads: its CPU threads (OMP_NUM_THREADS too).

    Returns:
        ``{"avg_map", "r1x_05", "per_tiou", "recall", "resize", "seed", "num_classes",
        "submission"}``: percentages as floats, ``per_tiou`` keyed like ``egoasl eval mq --json``.
    """
    peer = _resolve_peer(peer_dir)
    work = Path(work_dir)
    cfg = egoasl_config(data_dir, resize, config, config_overrides)
    converted = convert_dataset(cfg, work / "input")
    peer_cfg = apply_peer_overrides(peer_config(cfg, converted, seed), peer_overrides or [])
    config_path = write_peer_config(work / "actionformer.yaml", peer_cfg)

    predictions_path = work / "predictions_raw.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    _run([sys.executable, str(HERE / "actionformer_train.py"), "--peer", str(peer), "--config", str(config_path),
          "--out", str(predictions_path), "--device", device, "--threads", str(threads)],
         "ActionFormer training", env=env, log=work / "actionformer_train.log")

    raw = json.loads(predictions_path.read_text(encoding="utf-8"))
    labels = converted.taxonomy.labels
    detections = {}
    for clip in converted.val_clips:
        if clip.clip_uid not in raw:
            raise EgoaslError(f"{predictions_path}: the peer made no predictions for val clip {clip.clip_uid}")
        found = raw[clip.clip_uid]
        detections[clip.clip_uid] = {"label": [labels[i] for i in found["label_id"]], "score": found["score"],
                                     "segment": found["segment"]}
    submission = write_mq_submission(work / "submission.json", detections, clips=converted.val_clips, labels=labels)
    annotations = find_annotation_file(data_path(cfg, cfg.data.annotations), "mq", cfg.data.val_split)
    scored = json.loads(_run([*_egoasl_command(), "eval", "mq", "--annotations", str(annotations),
                              "--predictions", str(submission), "--split", cfg.data.val_split, "--json"],
                             "egoasl eval mq"))
    return {
        "avg_map": scored["average_mAP"],
        "r1x_05": scored["recall"][RECALL_KEY],
        "per_tiou": scored["mAP"],
        "recall": scored["recall"],
        "resize": resize,
        "seed": seed,
        "num_classes": len(labels),
        "submission": str(submission),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train ActionFormer's reference code on an egoasl dataset at "
                                     "egoasl's size and budget and score it with egoasl eval mq.")
    parser.add_argument("--peer", default=None, help=f"ActionFormer checkout (default ${DEFAULT_PEER_ENV})")
    parser.add_argument("--data", required=True, help="Ego4D-format MQ data root, e.g. from egoasl synth")
    parser.add_argument("--resize", choices=RESIZE_MODES, default="area",
                        help="egoasl's data.resize_mode for the input (default area)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None,
                        help="work folder (default: DATA.actionformer_<resize>_seed<seed> beside --data)")
    parser.add_argument("--config", default="demo/mq", help="egoasl config giving input, size and budget")
    parser.add_argument("--set", dest="peer_overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override the peer config, e.g. --set model.n_mha_win_size=-1 (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the egoasl config")
    args = parser.parse_args(argv)
    data = Path(args.data).resolve()
    work = args.work or str(data.parent / f"{data.name}.actionformer_{args.resize}_seed{args.seed}")
    try:
        result = run_actionformer(args.data, args.resize, args.seed, work, peer_dir=args.peer, config=args.config,
                                  config_overrides=args.overrides, peer_overrides=args.peer_overrides,
                                  device=args.device, threads=args.threads)
    except EgoaslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
