"""The device path: the models, the trainer and prediction on the device named by
``EGOASL_TEST_DEVICE`` (default ``cpu``) agree with the CPU reference.

On a CPU-only machine these tests run on the CPU (the comparison is then CPU with itself,
still a check of the device-agnostic code). ``bench/gpu_check.sh`` runs them with
``EGOASL_TEST_DEVICE=cuda``: every tensor the models create must land on the input's
device, fp16 autocast goes through the GradScaler, and a checkpoint trained on the GPU
loads and predicts on the CPU.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import TINY_MQ_CONFIG
from test_grounder import batch as nlq_batch
from test_grounder import tiny_cfg as tiny_nlq_cfg

from egoasl.config import load_config
from egoasl.engine.decode import decode_clip
from egoasl.engine.runs import load_run
from egoasl.engine.tasks import build_task
from egoasl.engine.train import train
from egoasl.model.detector import MQDetector
from egoasl.model.grounder import NLQGrounder

DEVICE = torch.device(os.environ.get("EGOASL_TEST_DEVICE", "cpu"))
CPU = torch.device("cpu")

if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("EGOASL_TEST_DEVICE=cuda but no CUDA device is visible", allow_module_level=True)


@pytest.fixture(autouse=True)
def _exact_cuda_matmuls():
    """Compare float32 with float32: no TF32 on the GPU side of a comparison."""
    if DEVICE.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _mq_inputs(cfg, batch_size=2):
    gen = torch.Generator().manual_seed(3)
    T = cfg.data.max_seq_len
    channels = sum(s.dim for s in cfg.data.sources)
    masks = torch.ones(batch_size, T, dtype=torch.bool)
    masks[1, T * 3 // 4:] = False  # a padded tail
    feats = torch.randn(batch_size, channels, T, generator=gen) * masks[:, None]
    segments = [torch.tensor([[3.0, 9.0], [20.0, 41.0]]), torch.tensor([[5.0, 30.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    return feats, masks, segments, labels


def _to(device, *tensors):
    return [t.to(device) if torch.is_tensor(t) else [x.to(device) for x in t] for t in tensors]


def test_mq_forward_losses_and_gradients_match_the_cpu():
    cfg = load_config(TINY_MQ_CONFIG)
    torch.manual_seed(0)
    reference = MQDetector(cfg).train()
    moved = MQDetector(cfg).train()
    moved.load_state_dict(reference.state_dict())
    moved.to(DEVICE)
    inputs = _mq_inputs(cfg)
    results = []
    for model, device in ((reference, CPU), (moved, DEVICE)):
        feats, masks, segments, labels = _to(device, *inputs)
        out = model(feats, masks)
        losses = model.losses(out, segments, labels)
        losses["loss"].backward()
        grads = {n: p.grad.detach().to(CPU) for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, {k: v.detach().to(CPU) for k, v in losses.items()}, grads))
    (out_cpu, loss_cpu, grad_cpu), (out_dev, loss_dev, grad_dev) = results
    assert all(x.device.type == DEVICE.type for x in out_dev.cls_logits)
    for a, b in zip(out_cpu.cls_logits, out_dev.cls_logits):
        torch.testing.assert_close(b.detach().to(CPU), a.detach(), rtol=1e-4, atol=1e-4)
    for a, b in zip(out_cpu.offsets, out_dev.offsets):
        torch.testing.assert_close(b.detach().to(CPU), a.detach(), rtol=1e-4, atol=1e-4)
    assert loss_cpu.keys() == loss_dev.keys()
    for key in loss_cpu:
        torch.testing.assert_close(loss_dev[key], loss_cpu[key], rtol=1e-4, atol=1e-5)
    assert grad_cpu.keys() == grad_dev.keys() and len(grad_cpu) > 10
    for name in grad_cpu:
        torch.testing.assert_close(grad_dev[name], grad_cpu[name], rtol=1e-3, atol=1e-5, msg=name)


def test_nlq_grounder_forward_matches_the_cpu():
    cfg = tiny_nlq_cfg()
    torch.manual_seed(0)
    reference = NLQGrounder(cfg).eval()
    moved = NLQGrounder(cfg).eval()
    moved.load_state_dict(reference.state_dict())
    moved.to(DEVICE)
    b = nlq_batch()
    keys = ("feats", "masks", "text", "text_masks")
    with torch.no_grad():
        out_cpu = reference(*(b[k] for k in keys))
        out_dev = moved(*(b[k].to(DEVICE) for k in keys))
    for a, c in zip(out_cpu.cls_logits, out_dev.cls_logits):
        torch.testing.assert_close(c.to(CPU), a, rtol=1e-4, atol=1e-4)


def test_decoding_device_outputs_gives_the_cpu_detections():
    cfg = load_config(TINY_MQ_CONFIG)
    torch.manual_seed(0)
    model = MQDetector(cfg).eval().to(DEVICE)
    feats, masks, _, _ = _to(DEVICE, *_mq_inputs(cfg))
    with torch.no_grad():
        out = model(feats, masks)
    args = (cfg.test, cfg.model.num_classes)
    on_device = decode_clip([x[0] for x in out.cls_logits], [x[0] for x in out.offsets], [x[0] for x in out.masks],
                            out.points, *args)
    on_cpu = decode_clip([x[0].to(CPU) for x in out.cls_logits], [x[0].to(CPU) for x in out.offsets],
                         [x[0].to(CPU) for x in out.masks], out.points.to(CPU), *args)
    assert len(on_device.scores) == len(on_cpu.scores) > 0
    for key in ("segments", "scores", "labels"):
        torch.testing.assert_close(getattr(on_device, key).to(CPU), getattr(on_cpu, key), rtol=1e-5, atol=1e-5)


AMPS = ["none", "bf16"] + (["fp16"] if DEVICE.type == "cuda" else [])


@pytest.mark.parametrize("amp", AMPS)
def test_training_on_the_device_learns_and_its_checkpoint_predicts_on_the_cpu(tiny_data, tmp_path, amp):
    cfg = load_config(TINY_MQ_CONFIG, [f"data.root={tiny_data}", f"train.device={DEVICE}", f"train.amp={amp}",
                                       "train.epochs=6", "train.eval_start_epoch=6"])
    run_dir = tmp_path / "run"
    summary = train(cfg, build_task(cfg, run_dir), run_dir, progress=False)
    assert summary.epochs_run == 6 and summary.best_metric is not None
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r and "split" not in r]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])  # it learns
    _, task, model = load_run(run_dir, device=CPU)
    detections, _ = task.predict(model, cfg.data.val_split, CPU, progress=False)
    assert detections and all(detections.values())
