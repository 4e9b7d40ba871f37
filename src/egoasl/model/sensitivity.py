"""Action Sensitivity Learning (spec section 4): per-point weights on the detection losses.

**Class level (the release).** Per class c, three unnormalised Gaussians
``G(x; μ, σ) = exp(-(x - μ)^2 / (2σ^2))`` of a positive point's position inside its GT:

- ``x = (centre - t) / (stride · length)`` (``arg_norm: stride_len``, the release) or
  ``(centre - t) / length`` (``arg_norm: len``, the paper). x > 0 means the point lies
  *before* the centre, i.e. on the start side;
- ``w_cls = G(x; μ_cls[c], σ_cls[c])``;
- ``w_loc = ½[G(x; μ_loc_start[c], σ_loc_start[c]) + G(x; μ_loc_end[c], σ_loc_end[c])]``,
  times ``w_cls`` when ``loc_times_cls`` (the release);
- initial values μ_cls = 0, μ_loc_start = +0.5, μ_loc_end = -0.5, all σ = 1. The release
  called the start-side bump ``mu_reg_right`` and the end-side bump ``mu_reg_left`` (its
  names are swapped relative to the sign of x); we name them by the side they peak on;
- negatives weigh 1; ``sigma_min > 0`` uses ``max(|σ|, sigma_min)``; ``normalize_pos_weights``
  rescales the positive weights to mean 1 per batch.

**Instance level (paper, optional).** A small head predicts ``q = (q_cls, q_loc) ∈ (0, 1)``
per point, trained by MSE to detached targets ``σ(logit of the GT class)`` and
``IoU(predicted, GT)`` at positives. Its detached output multiplies (``product``) or is added
to (``sum``) the class-level weights of positives. It is detached there so that the
weighted losses cannot drive q to zero, which they otherwise would: every weighted term is
non-negative.

**ASCL (optional).** The segment-level contrastive loss coded (and disabled) in the
release, with the spec's fixes: masked-mean pooling instead of the CUDA RoIAlign, self
excluded from numerator and denominator, choice of pyramid level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egoasl.config import ASLConfig
from egoasl.model.blocks import ChannelLayerNorm, MaskedConv1d
from egoasl.model.losses import iou_1d

GAUSSIAN_NAMES = ("mu_cls", "sigma_cls", "mu_loc_start", "sigma_loc_start", "mu_loc_end", "sigma_loc_end")
GAUSSIAN_INIT = {"mu_cls": 0.0, "sigma_cls": 1.0, "mu_loc_start": 0.5, "sigma_loc_start": 1.0,
                 "mu_loc_end": -0.5, "sigma_loc_end": 1.0}


def gaussian(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """The unnormalised Gaussian ``exp(-(x - μ)^2 / (2σ^2))``, element-wise."""
    return torch.exp(-((x - mu) ** 2) / (2.0 * sigma**2))


def class_gaussian_weights(x: Tensor, cls: Tensor, mu_cls: Tensor, sigma_cls: Tensor, mu_start: Tensor,
                           sigma_start: Tensor, mu_end: Tensor, sigma_end: Tensor, *, loc_times_cls: bool,
                           sigma_min: float) -> tuple[Tensor, Tensor]:
    """Class-level weights of M positive points: ``x (M,)``, ``cls (M,)`` -> ``w_cls, w_loc (M,)``."""

    def width(sigma: Tensor) -> Tensor:
        return sigma.abs().clamp(min=sigma_min) if sigma_min > 0 else sigma

    w_cls = gaussian(x, mu_cls[cls], width(sigma_cls[cls]))
    w_loc = 0.5 * (gaussian(x, mu_start[cls], width(sigma_start[cls])) + gaussian(x, mu_end[cls], width(sigma_end[cls])))
    if loc_times_cls:
        w_loc = w_loc * w_cls
    return w_cls, w_loc


def positive_gt(segments: list[Tensor], labels: list[Tensor], gt_index: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The assigned GT of every positive point, in ``tensor[gt_index >= 0]`` order.

    Returns ``batch (M,)``, ``point (M,)`` indices and the GT ``segment (M, 2)`` and ``label (M,)``.
    """
    batch, point = torch.nonzero(gt_index >= 0, as_tuple=True)  # (M,), (M,)
    if batch.numel() == 0:
        return batch, point, gt_index.new_zeros(0, 2, dtype=torch.float32), gt_index.new_zeros(0)
    seg = nn.utils.rnn.pad_sequence([s.float() for s in segments], batch_first=True)  # (B, N_max, 2)
    lab = nn.utils.rnn.pad_sequence([x.long() for x in labels], batch_first=True)  # (B, N_max)
    j = gt_index[batch, point]
    return batch, point, seg[batch, j], lab[batch, j]


class SensitivityWeights(nn.Module):
    """Learnable per-class Gaussians; ``forward`` gives dense ``(B, P)`` weights, 1 off positives."""

    def __init__(self, num_classes: int, cfg: ASLConfig) -> None:
        super().__init__()
        self.arg_norm = cfg.arg_norm
        self.loc_times_cls = cfg.loc_times_cls
        self.sigma_min = cfg.sigma_min
        self.class_aware = cfg.class_aware
        size = num_classes if cfg.class_aware else 1  # one Gaussian triple shared by all classes
        for name in GAUSSIAN_NAMES:
            setattr(self, name, nn.Parameter(torch.full((size,), GAUSSIAN_INIT[name])))

    def forward(self, points: Tensor, segments: list[Tensor], labels: list[Tensor],
                gt_index: Tensor) -> tuple[Tensor, Tensor]:
        # points: (P, 4); gt_index: (B, P), -1 off positives -> w_cls, w_loc: (B, P)
        batch, point, seg, cls = positive_gt(segments, labels, gt_index)
        t, stride = points[point, 0], points[point, 3]  # (M,)
        norm = seg[:, 1] - seg[:, 0]
        if self.arg_norm == "stride_len":
            norm = norm * stride
        x = (0.5 * (seg[:, 0] + seg[:, 1]) - t) / norm  # (M,)
        if not self.class_aware:
            cls = torch.zeros_like(cls)
        w_cls, w_loc = class_gaussian_weights(
            x, cls, *(getattr(self, name) for name in GAUSSIAN_NAMES),
            loc_times_cls=self.loc_times_cls, sigma_min=self.sigma_min,
        )
        ones = torch.ones(gt_index.shape, dtype=w_cls.dtype, device=w_cls.device)
        return ones.index_put((batch, point), w_cls), ones.index_put((batch, point), w_loc)


def gaussian_spread(model: nn.Module) -> dict[str, float]:
    """How class-aware the Gaussians of ``model`` (any module holding a :class:`SensitivityWeights`) are.

    For each of the six per-class parameters ``p`` (:data:`GAUSSIAN_NAMES`): ``p_std``, the
    standard deviation across classes (0 while every class has the same Gaussian), ``p_mean``,
    and ``p_shift``, the largest distance of a class's value from the initial one. Empty when
    the model has no class Gaussians.
    """
    weights = next((m for m in model.modules() if isinstance(m, SensitivityWeights)), None)
    if weights is None:
        return {}
    spread: dict[str, float] = {}
    for name in GAUSSIAN_NAMES:
        values = getattr(weights, name).detach().double()  # (K,)
        spread[f"{name}_std"] = values.std(correction=0).item()
        spread[f"{name}_mean"] = values.mean().item()
        spread[f"{name}_shift"] = (values - GAUSSIAN_INIT[name]).abs().max().item()
    return spread


def normalize_positive(weights: Tensor, positive: Tensor) -> Tensor:
    """Divide the weights of positives by their mean (negatives stay 1)."""
    if not positive.any():
        return weights
    return torch.where(positive, weights / weights[positive].mean(), weights)


class InstanceSensitivityHead(nn.Module):
    """Instance-level sensitivity: [masked conv -> LN -> ReLU -> masked conv -> sigmoid], shared over levels."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.conv = MaskedConv1d(width, width, kernel, bias=False)
        self.norm = ChannelLayerNorm(width)
        self.out = MaskedConv1d(width, 2, kernel)

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        # feats[l]: (B, width, T_l); masks[l]: (B, 1, T_l) -> q[l]: (B, T_l, 2) = (q_cls, q_loc)
        out = []
        for x, m in zip(feats, masks):
            h = torch.relu(self.norm(self.conv(x, m)[0]))
            out.append(torch.sigmoid(self.out(h, m)[0]).transpose(1, 2))
        return out


def instance_loss(q: Tensor, gt_logit: Tensor, pred_offsets: Tensor, target_offsets: Tensor) -> Tensor:
    """Summed MSE of ``q (M, 2)`` to detached ``(σ(gt_logit), IoU(pred, target))`` at M positives."""
    target = torch.stack([torch.sigmoid(gt_logit), iou_1d(pred_offsets, target_offsets)], dim=-1).detach()
    return ((q - target) ** 2).sum()


def combine_instance(weights: Tensor, q: Tensor, positive: Tensor, mode: str) -> Tensor:
    """Class-level ``weights (B, P)`` combined with detached instance ``q (B, P)`` at positives."""
    q = q.detach()
    combined = weights * q if mode == "product" else weights + q
    return torch.where(positive, combined, weights)


def window_mean(feats: Tensor, valid_len: Tensor, batch: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Mean of ``feats (B, C, T)`` over the cells i with ``lo <= i <= hi`` of clip ``batch``, ``(V, C)``.

    Windows are clipped to the clip's valid cells ``[0, valid_len)``; a window that holds no
    cell centre takes the cell nearest to its middle.
    """
    last = (valid_len[batch] - 1).to(lo.dtype)  # (V,)
    first = torch.ceil(lo)
    final = torch.floor(hi)
    middle = torch.round(0.5 * (lo + hi))
    empty = first > final
    first = torch.where(empty, middle, first)
    final = torch.where(empty, middle, final)
    first = torch.minimum(first.clamp(min=0), last).long()
    final = torch.minimum(final.clamp(min=0), last).long()
    csum = F.pad(feats.float().cumsum(dim=-1), (1, 0))  # (B, C, T + 1)
    rows = csum[batch]  # (V, C, T + 1)
    total = rows.gather(2, (final + 1)[:, None, None].expand(-1, rows.shape[1], 1)) - rows.gather(
        2, first[:, None, None].expand(-1, rows.shape[1], 1)
    )
    return total[..., 0] / (final - first + 1)[:, None].to(total.dtype)


def ascl_loss(feats: Tensor, masks: Tensor, stride: int, segments: list[Tensor], labels: list[Tensor],
              theta: float, gap: float, tau: float) -> Tensor:
    """Action-sensitive contrastive loss over all GTs of the batch, summed over anchors.

    ``feats (B, C, T_l)`` and ``masks (B, T_l)`` of one pyramid level with ``stride``
    (valid cells a prefix of each clip); segments in level-0 grid units. For a GT of length
    ℓ and ``δ = max(θℓ, 1)``: the *centre* view pools ``[c-δ, c+δ]``, the *boundary* view
    averages ``[s, s+δ]`` and ``[e-δ, e]``, the *outer* view averages ``[s-gap-δ, s-gap]``
    and ``[e+gap, e+gap+δ]``. Views are L2-normalised, similarities divided by τ. Anchors are
    the centre and boundary views; an anchor's positives are the other anchors of the same
    class (across the batch); outer views only enlarge the denominators; self is excluded.
    ``loss_a = -log Σ_{p ∈ pos(a)} softmax_a(p)``.
    """
    counts = [len(x) for x in labels]
    if sum(counts) == 0:
        return feats.sum() * 0.0
    valid_len = masks.sum(dim=-1)  # (B,)
    seg = torch.cat([s.float() for s in segments]).to(feats.device) / stride  # (G, 2) level-l cells
    cls = torch.cat([x.long() for x in labels]).to(feats.device)  # (G,)
    batch = torch.repeat_interleave(torch.arange(len(counts), device=feats.device),
                                    torch.tensor(counts, device=feats.device))  # (G,)
    s, e = seg[:, 0], seg[:, 1]
    c = 0.5 * (s + e)
    delta = torch.clamp(theta * (e - s), min=1.0 / stride)  # max(θℓ, 1 level-0 cell), in level-l cells
    g = gap / stride

    def pool(lo: Tensor, hi: Tensor) -> Tensor:
        return window_mean(feats, valid_len, batch, lo, hi)  # (G, C)

    centre = pool(c - delta, c + delta)
    boundary = 0.5 * (pool(s, s + delta) + pool(e - delta, e))
    outer = 0.5 * (pool(s - g - delta, s - g) + pool(e + g, e + g + delta))
    views = F.normalize(torch.cat([centre, boundary, outer]), dim=-1)  # (3G, C)
    G = cls.shape[0]
    sim = views[: 2 * G] @ views.T / tau  # (2G anchors, 3G views)
    anchor_cls = torch.cat([cls, cls])  # (2G,)
    view_cls = torch.cat([cls, cls, torch.full_like(cls, -1)])  # (3G,) outer views match nothing
    self_mask = torch.eye(2 * G, 3 * G, dtype=torch.bool, device=feats.device)
    log_prob = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=-1)
    positive = (anchor_cls[:, None] == view_cls[None, :]) & ~self_mask  # (2G, 3G)
    return -torch.logsumexp(log_prob.masked_fill(~positive, float("-inf")), dim=-1).sum()
