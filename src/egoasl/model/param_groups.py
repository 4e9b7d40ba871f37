"""Optimizer parameter groups: weight decay on conv/linear weights only.

- decay: the weights of ``nn.Linear`` and ``nn.Conv1d`` layers (MaskedConv1d wraps one);
- no decay: every bias (including the relative-position layer's ``r_w_bias``/``r_r_bias``),
  norm weights (channel LN and ``nn.LayerNorm``), ``Scale`` and LayerScale (``AffineDropPath``);
- the ASL per-class μ/σ: decay when ``wd_on_gauss`` (the release, where they fell into its
  catch-all group), otherwise no decay. With ``gauss_lr_mult != 1`` they form a third group
  of their own whose ``lr_mult`` the schedule applies (:func:`egoasl.engine.schedule.set_lr`).

The release also decayed the ``nn.LayerNorm`` weights of its channel blocks (its catch-all
group); ``decay_channel_ln`` (``train.decay_channel_ln``) does the same, otherwise all norm
weights are undecayed. A parameter that matches no rule raises, so a new module cannot slip
into the optimizer unclassified.
"""

from __future__ import annotations

from torch import nn

from egoasl.model.blocks import AffineDropPath, ChannelBlock, ChannelLayerNorm
from egoasl.model.heads import Scale
from egoasl.model.sensitivity import SensitivityWeights

_NO_DECAY_MODULES = (ChannelLayerNorm, nn.LayerNorm, Scale, AffineDropPath)


def _channel_ln_weights(model: nn.Module) -> set[int]:
    """Ids of the weights of the ``nn.LayerNorm`` inside every :class:`ChannelBlock`."""
    return {
        id(module.weight)
        for block in model.modules() if isinstance(block, ChannelBlock)
        for module in block.modules() if isinstance(module, nn.LayerNorm) and module.weight is not None
    }


def param_groups(model: nn.Module, weight_decay: float, wd_on_gauss: bool, *, decay_channel_ln: bool = False,
                 gauss_lr_mult: float = 1.0) -> list[dict]:
    """AdamW groups ``[decay, no_decay]`` (+ ``gauss`` when ``gauss_lr_mult != 1``), each parameter once.

    Every group carries ``lr_mult`` (1.0 but for the Gaussians' own group), the factor the
    schedule multiplies the learning rate by.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    gauss: list[nn.Parameter] = []
    own_gauss_group = gauss_lr_mult != 1.0
    channel_ln = _channel_ln_weights(model) if decay_channel_ln else set()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, SensitivityWeights):
                (gauss if own_gauss_group else decay if wd_on_gauss else no_decay).append(param)
            elif id(param) in channel_ln:
                decay.append(param)
            elif name.endswith("bias") or isinstance(module, _NO_DECAY_MODULES):
                no_decay.append(param)
            elif name == "weight" and isinstance(module, (nn.Linear, nn.Conv1d)):
                decay.append(param)
            else:
                full = f"{module_name}.{name}" if module_name else name
                raise TypeError(f"param_groups: no weight-decay rule for parameter {full} ({type(module).__name__})")
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
    ]
    if gauss:
        groups.append({"params": gauss, "weight_decay": weight_decay if wd_on_gauss else 0.0, "lr_mult": gauss_lr_mult})
    return groups
