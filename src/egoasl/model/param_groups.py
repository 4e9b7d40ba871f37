"""Optimizer parameter groups: weight decay on conv/linear weights only.

- decay: the weights of ``nn.Linear`` and ``nn.Conv1d`` layers (MaskedConv1d wraps one);
- no decay: every bias (including the relative-position layer's ``r_w_bias``/``r_r_bias``),
  norm weights (channel LN and ``nn.LayerNorm``), ``Scale`` and LayerScale (``AffineDropPath``);
- the ASL per-class μ/σ: decay when ``wd_on_gauss`` (the release, where they fell into its
  catch-all group), otherwise no decay.

The release also decayed the ``nn.LayerNorm`` weights of its channel blocks (its catch-all
group); here all norm weights are undecayed. A parameter that matches no rule raises, so a
new module cannot slip into the optimizer unclassified.
"""

from __future__ import annotations

from torch import nn

from egoasl.model.blocks import AffineDropPath, ChannelLayerNorm
from egoasl.model.heads import Scale
from egoasl.model.sensitivity import SensitivityWeights

_NO_DECAY_MODULES = (ChannelLayerNorm, nn.LayerNorm, Scale, AffineDropPath)


def param_groups(model: nn.Module, weight_decay: float, wd_on_gauss: bool) -> list[dict]:
    """Two AdamW groups, ``[decay, no_decay]``, covering every trainable parameter exactly once."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, SensitivityWeights):
                (decay if wd_on_gauss else no_decay).append(param)
            elif name.endswith("bias") or isinstance(module, _NO_DECAY_MODULES):
                no_decay.append(param)
            elif name == "weight" and isinstance(module, (nn.Linear, nn.Conv1d)):
                decay.append(param)
            else:
                full = f"{module_name}.{name}" if module_name else name
                raise TypeError(f"param_groups: no weight-decay rule for parameter {full} ({type(module).__name__})")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
