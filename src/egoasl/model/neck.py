"""The neck: identity per pyramid level followed by a channel LayerNorm (release ``FPNIdentity``)."""

from __future__ import annotations

from torch import Tensor, nn

from egoasl.model.blocks import ChannelLayerNorm


class IdentityNeck(nn.Module):
    """One channel LayerNorm per level; no lateral or top-down paths."""

    def __init__(self, width: int, num_levels: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(ChannelLayerNorm(width) for _ in range(num_levels))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        # feats[l]: (B, width, T_l); masks[l]: (B, 1, T_l) -> same shapes
        if len(feats) != len(self.norms):
            raise ValueError(f"neck built for {len(self.norms)} levels, got {len(feats)}")
        return [norm(x) for norm, x in zip(self.norms, feats)], list(masks)
