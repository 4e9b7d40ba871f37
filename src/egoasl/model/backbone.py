"""The MQ backbone: per-source projections, embedding, transformer stem and pyramid.

Data flow for ``feats (B, sum(dim), T)``, ``mask (B, 1, T)`` (release sizes in brackets):

1. split the channels by ``data.sources[i].dim`` and project each source with its own masked
   1x1 conv to ``proj_dim`` [256/128/128/512], then concatenate [1024];
2. ``embd_layers`` x [masked conv k``embd_kernel`` (no bias) -> channel LN -> ReLU] to ``width``;
3. add the sinusoidal position table / sqrt(width) at valid steps (``use_abs_pe``);
4. ``stem_layers`` stride-1 blocks (temporal attention, plus channel attention when
   ``channel_attention``): the output is pyramid level 0;
5. with ``rel_global_layer``, one relative-position global attention layer (the release's
   XLNet) transforms level 0 before it enters the branch; level 0 itself stays the stem output;
6. ``num_levels - 1`` stride-2 blocks, each output one more level (strides 2, 4, ...).

Padded steps: ``model.mask_conv_inputs``, ``masked_skip_pool`` and ``zero_padded_relpos``
(all true by default; false in ``mq/release``) choose between egoasl's padding-blind
convolutions, skip and rel-pos layer and the release's, which let padded steps in
(:mod:`egoasl.model.blocks`, :mod:`egoasl.model.relpos`).

With ``model.grad_checkpoint`` the stem and branch blocks are activation-checkpointed in
training (see :meth:`Backbone._run`).

Returns the list of ``(x_l, mask_l)`` per level, ``x_l (B, width, T / 2^l)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from egoasl.config import ModelConfig, SourceConfig
from egoasl.errors import EgoaslError
from egoasl.model.blocks import ChannelLayerNorm, MaskedConv1d, TransformerBlock, sinusoid_table
from egoasl.model.relpos import RelPosGlobalLayer


class Backbone(nn.Module):
    """Projection -> embedding -> PE -> stem -> (rel-pos layer) -> stride-2 pyramid."""

    def __init__(self, cfg: ModelConfig, sources: Sequence[SourceConfig]) -> None:
        super().__init__()
        if not sources:
            raise EgoaslError("config key data.sources: the model needs at least one feature source")
        if cfg.rel_global_layer and cfg.num_levels < 2:
            raise EgoaslError(
                "config key model.rel_global_layer: the layer feeds the downsampling branch, which "
                f"num_levels={cfg.num_levels} does not have; set it to false or use num_levels >= 2"
            )
        self.sources = [(s.name, s.dim) for s in sources]
        self.width = cfg.width
        self.use_abs_pe = cfg.use_abs_pe
        self.grad_checkpoint = cfg.grad_checkpoint
        self.proj = nn.ModuleList(MaskedConv1d(s.dim, s.proj_dim, 1) for s in sources)
        n_in = sum(s.proj_dim for s in sources)
        self.embd = nn.ModuleList(
            MaskedConv1d(n_in if i == 0 else cfg.width, cfg.width, cfg.embd_kernel, bias=False,
                         mask_input=cfg.mask_conv_inputs)
            for i in range(cfg.embd_layers)
        )
        self.embd_norm = nn.ModuleList(ChannelLayerNorm(cfg.width) for _ in range(cfg.embd_layers))
        block = dict(width=cfg.width, n_head=cfg.n_head, window=cfg.attn_window, dropout=cfg.dropout,
                     droppath=cfg.droppath, channel_attention=cfg.channel_attention, t_c_alpha=cfg.t_c_alpha,
                     masked_channel_attention=cfg.masked_channel_attention,
                     mask_conv_inputs=cfg.mask_conv_inputs, masked_skip_pool=cfg.masked_skip_pool)
        self.stem = nn.ModuleList(TransformerBlock(stride=1, **block) for _ in range(cfg.stem_layers))
        self.rel_layer = (
            RelPosGlobalLayer(cfg.width, cfg.n_head, cfg.rel_global_inner, cfg.rel_dropout,
                              zero_padded=cfg.zero_padded_relpos)
            if cfg.rel_global_layer else None
        )
        self.branch = nn.ModuleList(TransformerBlock(stride=2, **block) for _ in range(cfg.num_levels - 1))
        # the release zeroes every conv/linear bias of the backbone (ActionFormer's init)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def input_dim(self) -> int:
        return sum(dim for _, dim in self.sources)

    def forward(self, x: Tensor, mask: Tensor,
                stem_fusion: Callable[[int, Tensor, Tensor], Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        # x: (B, sum(dim), T); mask: (B, 1, T) bool; stem_fusion(i, x, mask) -> x after stem block i (NLQ)
        if x.shape[1] != self.input_dim:
            parts = " + ".join(f"{name} {dim}" for name, dim in self.sources)
            raise EgoaslError(
                f"model input has {x.shape[1]} feature channels, but data.sources expects "
                f"{self.input_dim} = {parts} (check each source's dim against its feature files)"
            )
        chunks = torch.split(x, [dim for _, dim in self.sources], dim=1)
        # concatenated on the (B, T, C) views, so x stays channels-last (see model.blocks)
        x = torch.cat([proj(chunk, mask)[0].transpose(1, 2) for proj, chunk in zip(self.proj, chunks)], dim=2)
        x = x.transpose(1, 2)  # (B, sum(proj_dim), T)
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = torch.relu(norm(x))  # (B, width, T)
        if self.use_abs_pe:
            pe = sinusoid_table(x.shape[-1], self.width, device=x.device).to(x.dtype)  # (width, T)
            x = x + pe[None] / math.sqrt(self.width) * mask.to(x.dtype)
        for i, block in enumerate(self.stem):
            x, mask = self._run(block, x, mask)
            if stem_fusion is not None:  # NLQ early fusion: the query conditions every stem block's output
                x = stem_fusion(i, x, mask)
        feats, masks = [x], [mask]
        if self.rel_layer is not None:
            x = self.rel_layer(x, mask)
        for block in self.branch:
            x, mask = self._run(block, x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks

    def _run(self, block: TransformerBlock, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One block; with ``grad_checkpoint`` it keeps only its inputs for backward and runs again there.

        The recomputation restores the RNG and autocast state, so it draws the same dropout
        masks: gradients are those of the plain run.
        """
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, mask, use_reentrant=False)
        return block(x, mask)
