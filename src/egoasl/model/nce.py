"""Frame-query contrastive loss of the NLQ grounder (spec section 8.4, with the [REC] fixes).

For clip b, with the fused features of all its points ``v_i`` (levels concatenated) and its
text tokens ``w_l``:

- ``v̂_i = v_i / ‖v_i‖`` (each point L2-normalised over channels; S4 normalised over time);
- ``ŵ = mean_l (w_l / ‖w_l‖)`` over the **valid** tokens (not renormalised, so ``‖ŵ‖ <= 1``);
- ``s_i = ⟨v̂_i, ŵ⟩ / τ``;
- positives ``P⁺`` are the points assigned to the query's window, negatives ``P⁻`` every other
  **valid** point (S4 also counted padded points as negatives);
- ``L_b = (1/|P⁺|) Σ_{i ∈ P⁺} -log(e^{s_i} / (e^{s_i} + Σ_{k ∈ P⁻} e^{s_k}))``, 0 for a clip
  without positives.

:func:`frame_query_nce` returns ``Σ_b L_b``; the grounder divides it by the loss normaliser
and weighs it by ``loss.nce_weight``. Computed in float32 on the inputs' device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from egoasl.errors import EgoaslError


def frame_query_nce(point_feats: Tensor, valid: Tensor, positive: Tensor, text: Tensor, text_mask: Tensor,
                    tau: float) -> Tensor:
    """The summed per-clip NCE (see the module docstring).

    Args:
        point_feats: ``(B, C, P)`` fused features of every point.
        valid: ``(B, P)`` bool, False at padded points.
        positive: ``(B, P)`` bool, the positive points (only valid ones count).
        text: ``(B, C, L)`` text token matrix.
        text_mask: ``(B, L)`` bool, True on real tokens.
        tau: temperature, > 0.

    Returns:
        A scalar tensor, ``Σ_b L_b``.
    """
    if tau <= 0:
        raise EgoaslError(f"config key loss.nce_tau: expected a positive temperature, got {tau}")
    B, C, P = point_feats.shape
    if valid.shape != (B, P) or positive.shape != (B, P):
        raise EgoaslError(f"frame_query_nce: valid and positive must be {(B, P)}, got {tuple(valid.shape)}, {tuple(positive.shape)}")
    if text.shape[:2] != (B, C) or text_mask.shape != (B, text.shape[2]):
        raise EgoaslError(f"frame_query_nce: text (B={B}, C={C}, L) with a (B, L) mask expected, got "
                          f"{tuple(text.shape)}, {tuple(text_mask.shape)}")
    v = F.normalize(point_feats.float(), dim=1)  # (B, C, P)
    tokens = F.normalize(text.float(), dim=1) * text_mask[:, None, :]  # (B, C, L), zero at padded tokens
    w = tokens.sum(dim=2) / text_mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, C)
    s = torch.einsum("bcp,bc->bp", v, w) / tau  # (B, P)
    pos = positive & valid
    neg = valid & ~positive
    batch, point = torch.nonzero(pos, as_tuple=True)  # (M,) each
    if batch.numel() == 0:
        return s.sum() * 0.0
    s_pos = s[batch, point]  # (M,)
    negatives = s.masked_fill(~neg, float("-inf"))[batch]  # (M, P)
    # the row always holds the finite s_i, so the log-sum-exp (and its gradient) stays finite
    denominator = torch.logsumexp(torch.cat([s_pos[:, None], negatives], dim=1), dim=1)  # (M,)
    per_point = denominator - s_pos  # (M,)
    counts = pos.sum(dim=1).to(per_point.dtype)  # (B,)
    return (per_point / counts[batch]).sum()
