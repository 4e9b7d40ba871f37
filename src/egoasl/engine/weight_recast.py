"""Autocast's weight copies, not kept for backward but cast again there (``train.recast_weights``).

Under autocast every matmul and convolution casts its float32 weight to bf16 (or fp16), and
autograd keeps that copy until the backward, which needs it for the input gradient: at the
release size 0.41 GiB of copies live from the forward to the backward of every step.

:func:`recast_weights_in_backward` is a ``saved_tensors_hooks`` context. A tensor saved for
backward that is a cast of a parameter (autograd: a ``ToCopyBackward0`` reaching the
parameter's ``AccumulateGrad``, through views on either side) is stored as a reference to the
parameter, and cast again from it when the backward asks. The weights do not change between
a step's forward and its backward, so the backward sees the same values bit for bit. Each
kind of saved cast (parameter, dtype, shape, strides) is checked once against the recast
before it is ever dropped; one that does not match exactly is kept as it is.

Cost: each weight is cast once more per step (0.44 GB written at the release size, tens of
milliseconds on a CPU); peak memory falls by what the copies held (``bench/RESULTS.md``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
from torch import Tensor

VIEW_NODES = frozenset({
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "UnsqueezeBackward0", "SqueezeBackward0",
    "SqueezeBackward1", "TBackward0", "TransposeBackward0", "PermuteBackward0", "AsStridedBackward0",
})


def _through_views(node):
    while node is not None and type(node).__name__ in VIEW_NODES:
        node = node.next_functions[0][0]
    return node


def cast_parameter(t: Tensor) -> torch.nn.Parameter | None:
    """The parameter ``t`` is an autocast copy of (a view of a cast of a view of it), or None."""
    node = _through_views(t.grad_fn)
    if node is None or type(node).__name__ != "ToCopyBackward0":
        return None
    node = _through_views(node.next_functions[0][0])
    if node is None or type(node).__name__ != "AccumulateGrad":
        return None
    # parameters only: other leaves (an input that requires grad) may be changed before the backward
    return node.variable if isinstance(node.variable, torch.nn.Parameter) else None


class _Recast:
    """The pack / unpack pair, with the signatures already checked (see the module docstring)."""

    def __init__(self) -> None:
        self.checked: dict[tuple, tuple[weakref.ref, bool]] = {}  # (id, signature) -> (parameter, recast exact)
        self.dropped_bytes = 0  # of the last context: what the copies would have held

    @staticmethod
    def _recast(param: Tensor, dtype: torch.dtype, shape, stride, offset: int) -> Tensor:
        return param.detach().to(dtype).as_strided(shape, stride, offset)

    def pack(self, t: Tensor):
        param = cast_parameter(t)
        if param is None or not param.is_contiguous() or t.untyped_storage().nbytes() != param.numel() * t.element_size():
            return t
        signature = (t.dtype, tuple(t.shape), t.stride(), t.storage_offset())
        key = (id(param), *signature)
        owner, exact = self.checked.get(key, (None, False))
        if owner is None or owner() is not param:  # not checked yet (or the id of a parameter since freed)
            exact = torch.equal(self._recast(param, *signature), t)
            self.checked[key] = (weakref.ref(param), exact)
        if not exact:
            return t
        self.dropped_bytes += t.numel() * t.element_size()
        return (param, *signature)

    def unpack(self, packed):
        return packed if isinstance(packed, Tensor) else self._recast(*packed)


_RECAST = _Recast()


@contextlib.contextmanager
def recast_weights_in_backward() -> Iterator[_Recast]:
    """Within the context, saved autocast weight copies are cast again in backward (module docstring).

    Yields the hook pair; its ``dropped_bytes`` counts what this context did not keep.
    """
    _RECAST.dropped_bytes = 0
    with torch.autograd.graph.saved_tensors_hooks(_RECAST.pack, _RECAST.unpack):
        yield _RECAST
