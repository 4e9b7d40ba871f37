"""Train ActionFormer's reference code on a converted dataset and write its raw val predictions.

Run by ``actionformer_harness.py`` in a child process (the peer's ``libs`` package, its global
seeding and its deterministic-algorithms switch stay out of the caller's process):

    python bench/peer/actionformer_train.py --peer PEER_DIR --config peer.yaml --out predictions.json

It follows the peer's ``train.py`` and ``eval.py``: ``fix_random_seed``, the peer's dataset,
data loader, model, optimizer (its decay / no-decay split), warm-up + cosine scheduler and
``train_one_epoch`` with gradient clipping and EMA, then inference of the EMA model on the val
split, one clip at a time, with the peer's post-processing (Soft-NMS in its C++ extension).
What differs, and why:

* no ``nn.DataParallel`` wrapper and the model on ``--device`` (the peer assumes one CUDA
  GPU; on one device the wrapper only adds a ``module.`` prefix to parameter names);
* ``ModelEma`` gets ``harness.ema_decay`` from the config (``train.py`` keeps its 0.999 default);
* ``torch.cuda.synchronize`` (called by ``train_one_epoch`` when it prints) is a no-op on
  machines without CUDA; no TensorBoard writer and no checkpoints.

Predictions are written as ``{clip_uid: {"segment": [[s, e], ...], "score": [...],
"label_id": [...]}}`` with times in clip seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from egoasl.io.atomic import write_text_atomic


def _import_peer(peer: Path):
    """The peer's modules, with its in-place built NMS extension importable."""
    for needed in (peer / "libs" / "core" / "config.py", peer / "libs" / "utils" / "nms.py"):
        if not needed.is_file():
            sys.exit(f"--peer {peer}: not an ActionFormer checkout (no {needed.relative_to(peer)}); see bench/peer/README.md")
    sys.path[:0] = [str(peer), str(peer / "libs" / "utils")]
    try:
        import nms_1d_cpu  # noqa: F401  (the peer's C++ extension, built in libs/utils)
    except ImportError as exc:
        sys.exit(f"--peer {peer}: its NMS extension nms_1d_cpu is not built ({exc}); see bench/peer/README.md")
    from libs import core, datasets, modeling, utils

    return core, datasets, modeling, utils


def train_and_predict(peer: Path, config_path: Path, device: str, threads: int) -> dict:
    """Train the peer as configured and return its val predictions (clip seconds, label ids)."""
    core, datasets, modeling, utils = _import_peer(peer)
    torch.set_num_threads(threads)
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *args, **kwargs: None
    cfg = core.load_config(str(config_path))
    rng = utils.fix_random_seed(cfg["init_rand_seed"], include_cuda=True)

    train_set = datasets.make_dataset(cfg["dataset_name"], True, cfg["train_split"], **cfg["dataset"])
    cfg["model"]["train_cfg"]["head_empty_cls"] = train_set.get_attributes()["empty_label_ids"]
    train_loader = datasets.make_data_loader(train_set, True, rng, **cfg["loader"])
    model = modeling.make_meta_arch(cfg["model_name"], **cfg["model"]).to(device)
    print(f"ActionFormer: {sum(p.numel() for p in model.parameters())} parameters, "
          f"{len(train_set)} training clips, {len(train_loader)} steps per epoch", flush=True)
    optimizer = utils.make_optimizer(model, cfg["opt"])
    scheduler = utils.make_scheduler(optimizer, cfg["opt"], len(train_loader))
    model_ema = utils.ModelEma(model, decay=cfg["harness"]["ema_decay"])
    max_epochs = cfg["opt"]["epochs"] + cfg["opt"]["warmup_epochs"]
    for epoch in range(max_epochs):
        utils.train_one_epoch(train_loader, model, optimizer, scheduler, epoch, model_ema=model_ema,
                              clip_grad_l2norm=cfg["train_cfg"]["clip_grad_l2norm"], tb_writer=None,
                              print_freq=max(len(train_loader) // 2, 1))

    val_set = datasets.make_dataset(cfg["dataset_name"], False, cfg["val_split"], **cfg["dataset"])
    ema_model = model_ema.module.eval()
    predictions = {}
    with torch.no_grad():
        for index in range(len(val_set)):
            out = ema_model([val_set[index]])[0]
            predictions[out["video_id"]] = {
                "segment": out["segments"].tolist(),
                "score": out["scores"].tolist(),
                "label_id": out["labels"].tolist(),
            }
    return predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", required=True, type=Path, help="ActionFormer checkout (actionformer_release)")
    parser.add_argument("--config", required=True, type=Path, help="peer YAML config written by the harness")
    parser.add_argument("--out", required=True, type=Path, help="predictions JSON to write")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    predictions = train_and_predict(args.peer.resolve(), args.config, args.device, args.threads)
    write_text_atomic(args.out, json.dumps(predictions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
