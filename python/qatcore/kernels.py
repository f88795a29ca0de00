"""The kernels on prepared arrays: the entry points for frameworks that hold their own
tensors and call a kernel on every training step (``qatcore.torch`` does).

Nothing here converts an argument or builds a result object, so a call costs what the
kernel costs. Every argument is checked in the native module, which raises ``TypeError``
or ``ValueError`` naming it:

- arrays are float32 and C-contiguous; ``out`` is writable, shaped like the input, and
  either is the input or does not overlap it (where the function allows aliasing);
- per-channel values (clips, scales) are 1-d float32 arrays of one entry per channel
  along ``axis``; per tensor they have shape ``(1,)`` and ``axis`` is None (clips may
  also be 0-d there; the clip gradients come back in the clips' shape);
- ``num_bits`` is a supported bit width.

The functions of ``qatcore`` itself (``qatcore.ulq_forward`` and the rest) take any
array-like, return typed results, and are built on these.
"""

from __future__ import annotations

from ._core import (
    arq,
    fake_quantize,
    ulq_backward,
    ulq_forward,
    ulq_weight_backward,
    ulq_weight_forward,
)

__all__ = [
    "arq",
    "fake_quantize",
    "ulq_backward",
    "ulq_forward",
    "ulq_weight_backward",
    "ulq_weight_forward",
]
