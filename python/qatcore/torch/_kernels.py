"""The operations on qatcore's C++ kernels, for CPU float32 tensors (``_dispatch``
registers them there).

The kernels take the tensors' memory without a copy (``Tensor.numpy()`` shares it;
outputs come from ``torch.empty_like``) and check every array; the layers have checked
their options once. Signatures as in ``_portable``.
"""

from __future__ import annotations

import numpy as np
import torch

from qatcore import kernels


def _np(t: torch.Tensor) -> np.ndarray:
    """A CPU float32 tensor's memory as a C-contiguous array (copied only when strided)."""
    a = t.detach().numpy()
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _per_channel(t: torch.Tensor) -> np.ndarray:
    """A 0-d or 1-d scale tensor as the 1-d C-contiguous array the kernels take."""
    return _np(t.reshape(-1))


def _empty(x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """A new C-contiguous tensor shaped like ``x``, and its memory as an array."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    return out, out.numpy()


def arq(w: torch.Tensor, channel_wise: bool, axis: int, num_bits: int) -> torch.Tensor:
    out, dst = _empty(w)
    kernels.arq(_np(w), dst, axis if channel_wise else None, num_bits)
    return out


def ulq_forward(
    x: torch.Tensor,
    clip_min: torch.Tensor,
    clip_max: torch.Tensor,
    fixed_min: bool,
    num_bits: int,
    axis: int | None,
) -> torch.Tensor:
    out, dst = _empty(x)  # clips: 0-d per tensor, 1-d per channel, as the kernels take
    kernels.ulq_forward(_np(x), dst, _np(clip_min), _np(clip_max), axis, fixed_min, num_bits)
    return out


def ulq_backward(
    g: torch.Tensor,
    x: torch.Tensor,
    clip_min: torch.Tensor,
    clip_max: torch.Tensor,
    fixed_min: bool,
    num_bits: int,
    axis: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gx, dst = _empty(x)
    lo, hi = _np(clip_min), _np(clip_max)
    # The clip gradients come back shaped like the clips.
    sums = kernels.ulq_backward(_np(g), _np(x), dst, lo, hi, axis, fixed_min, num_bits)
    return gx, torch.from_numpy(sums[0]), torch.from_numpy(sums[1])


def ulq_weight_forward(
    w: torch.Tensor, scale: torch.Tensor, num_bits: int, axis: int | None
) -> torch.Tensor:
    out, dst = _empty(w)
    kernels.ulq_weight_forward(_np(w), dst, _per_channel(scale), axis, num_bits)
    return out


def ulq_weight_backward(
    g: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, num_bits: int, axis: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    g = g.contiguous()
    g_np = g.detach().numpy()
    # out=grad_output: grad_weight is the incoming gradient itself, not a copy.
    grad_s = kernels.ulq_weight_backward(g_np, _np(w), g_np, _per_channel(scale), axis, num_bits)
    return g, torch.from_numpy(grad_s).reshape(scale.shape)
