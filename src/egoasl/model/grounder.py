"""The NLQ grounder: the MQ detector's pyramid and heads, conditioned on the query's text.

Data flow for ``feats (B, C_in, T)``, ``masks (B, T)``, ``text (B, L, text_dim)``, ``text_masks (B, L)``
(spec section 8.2; report sizes in brackets):

1. the MQ backbone (:class:`~egoasl.model.backbone.Backbone`: per-source projections
   [256/512/256], embedding to ``width`` [512], stem and stride-2 blocks) gives the pyramid;
2. the :class:`~egoasl.model.text.TextEncoder` turns the tokens into ``W (B, width, L)``;
3. ``model.fusion: late``: one :class:`~egoasl.model.fusion.TextFusion` (shared weights) fuses
   every level with ``W``; ``early``: a :class:`~egoasl.model.fusion.StemTextFusion` layer after
   each stem block fuses ``W`` before any downsampling (the text is encoded first), and the
   levels go to the neck as they are;
4. the MQ neck and the shared heads with ``num_classes = 1`` (cls prior, per-level Scale).

Losses (section 8.4): the MQ detector's focal (``loss.focal_alpha``, ``loss.label_smoothing``)
and DIoU terms with the one-class ASL weights (section 8.3: the sensitivity module with K = 1),
plus ``loss.nce_weight`` x the frame-query NCE (:mod:`egoasl.model.nce`) over the fused neck
features, all divided by the same loss normaliser. Everything else (assignment, ASL, the
normaliser, ``sensitivity_parameters``) is :class:`~egoasl.model.detector.MQDetector`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from egoasl.config import Config
from egoasl.errors import EgoaslError
from egoasl.model.detector import DetectorOutput, MQDetector
from egoasl.model.dropout import use_fast_dropout
from egoasl.model.fusion import StemTextFusion, TextFusion
from egoasl.model.nce import frame_query_nce
from egoasl.model.text import TextEncoder


@dataclass
class GrounderOutput(DetectorOutput):
    """:class:`DetectorOutput` (``feats`` are the fused neck features) plus the encoded text."""

    text_feats: Tensor  # (B, width, L) token matrix W, zero at padded tokens
    text_masks: Tensor  # (B, L) bool


class NLQGrounder(MQDetector):
    """One-class ASL detector whose pyramid is fused with the query text at every level."""

    def __init__(self, cfg: Config) -> None:
        if cfg.model.num_classes != 1:
            raise EgoaslError(
                f"config key model.num_classes: the NLQ grounder scores one class (the query), got {cfg.model.num_classes}"
            )
        if cfg.asl.ascl_weight > 0:
            raise EgoaslError(
                "config key asl.ascl_weight: the ASCL contrasts windows by class, which NLQ queries do not have; "
                "set it to 0 for NLQ"
            )
        super().__init__(cfg)
        m = cfg.model
        self.text_encoder = TextEncoder(cfg.data.text_dim, m.width, m.n_head, m.text_layers, m.dropout, m.droppath)
        self.fusion_mode = m.fusion
        if m.fusion == "early":
            self.stem_fusion = StemTextFusion(m.width, m.n_head, m.stem_layers, m.dropout, m.droppath)
        else:
            self.fusion = TextFusion(m.width, m.n_head, m.fusion_layers, m.dropout, m.droppath)
        if m.dropout_sampler == "fast":  # the text encoder and fusion layers too
            use_fast_dropout(self)

    def forward(self, feats: Tensor, masks: Tensor, text: Tensor, text_masks: Tensor) -> GrounderOutput:  # type: ignore[override]
        """Raw outputs for a batch of queries (each with its clip's features)."""
        if text.shape[0] != feats.shape[0]:
            raise EgoaslError(f"model input: {feats.shape[0]} clips but {text.shape[0]} queries in the batch")
        if self.fusion_mode == "early":
            words, word_masks = self.text_encoder(text, text_masks)  # (B, width, L), (B, L)
            fused, level_masks = self.pyramid(
                feats, masks, lambda i, x, m: self.stem_fusion(i, x, m, words, word_masks))
        else:
            levels, level_masks = self.pyramid(feats, masks)  # per level (B, width, T_l), (B, 1, T_l)
            words, word_masks = self.text_encoder(text, text_masks)  # (B, width, L), (B, L)
            fused = [self.fusion(x, m, words, word_masks) for x, m in zip(levels, level_masks)]
        out = self.head_outputs(*self.neck(fused, level_masks))
        return GrounderOutput(**vars(out), text_feats=words, text_masks=word_masks)

    def losses(self, out: GrounderOutput, segments: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        """``loss = cls + reg_weight·reg + nce_weight·nce (+ the MQ extras that are switched on)``.

        ``segments[b] (1, 2)`` is query b's window in level-0 grid cells (``(0, 2)`` when the
        training crop lost it), ``labels[b]`` zeros. ``nce`` is present when ``loss.nce_weight > 0``.
        """
        terms, positive, norm = self.loss_terms(out, segments, labels)
        if self.loss_cfg.nce_weight > 0:
            valid = torch.cat(out.masks, dim=1)  # (B, P)
            point_feats = torch.cat(out.feats, dim=-1)  # (B, width, P)
            terms["nce"] = frame_query_nce(point_feats, valid, positive, out.text_feats, out.text_masks,
                                           self.loss_cfg.nce_tau) / norm
        return self.weighted_total(terms, norm)

    def loss_weights(self) -> dict[str, float]:
        """The MQ weights plus ``nce: loss.nce_weight``."""
        return {**super().loss_weights(), "nce": self.loss_cfg.nce_weight}
