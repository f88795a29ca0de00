"""Autograd functions for ARQ, ULQ and weight ULQ, on the qatcore kernels or in portable
PyTorch.

CPU float32 tensors go to ``qatcore.kernels`` without a copy (``Tensor.numpy()`` shares
the memory; outputs come from ``torch.empty_like``), the layers having checked their
options once; the kernels check every array. Tensors on other devices (CUDA) use the
same SPEC formulas written in PyTorch ops, which the tests check against the kernels
on CPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from qatcore import EPS, kernels, qrange


def _on_kernels(*tensors: torch.Tensor) -> bool:
    for t in tensors:
        if not t.is_cpu or t.dtype != torch.float32:
            return False
    return True


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


def _along(values: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    if axis is None:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


# ---- the SPEC in PyTorch ops (any device) ------------------------------------------------


def _div(a: torch.Tensor, d: float) -> torch.Tensor:
    """``a / d`` rounded once, as the SPEC divides. PyTorch's CUDA kernels multiply by the
    reciprocal when the divisor is a Python or CPU scalar, an ulp off the quotient at
    times; a 0-d tensor on ``a``'s device is divided by."""
    return a / torch.tensor(d, dtype=a.dtype, device=a.device)


def portable_fake_quant(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int, axis: int | None
) -> torch.Tensor:
    qmin, qmax = qrange(num_bits)
    s = _along(scale.to(torch.float32), axis, x.ndim)
    z = _along(zero_point.to(torch.float32), axis, x.ndim)
    q = torch.clamp(torch.round(x * (1.0 / s)) + z, qmin, qmax)  # round: half to even
    return (q - z) * s


def portable_arq_scale(
    w: torch.Tensor, channel_wise: bool, axis: int, num_bits: int
) -> torch.Tensor:
    qmin, qmax = qrange(num_bits)
    if channel_wise:
        flat = w.detach().movedim(axis, 0).reshape(w.shape[axis], -1)
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    else:
        lo, hi = w.detach().amin().reshape(1), w.detach().amax().reshape(1)
    s = torch.maximum(_div(hi.clamp_min(0), qmax), _div(-lo.clamp_max(0), -qmin))
    return torch.where(s >= EPS, s, torch.ones_like(s))


def portable_ulq_params(
    clip_min: torch.Tensor, clip_max: torch.Tensor, fixed_min: bool, num_bits: int
) -> dict[str, torch.Tensor]:
    qmin, qmax = qrange(num_bits)
    levels = float(qmax - qmin)
    lo = clip_min.detach().to(torch.float32)
    hi = clip_max.detach().to(torch.float32)
    cmin = torch.zeros_like(lo) if fixed_min else torch.minimum(lo, torch.zeros_like(lo))
    cmax = torch.maximum(hi, torch.full_like(hi, float(np.float32(levels) * np.float32(EPS))))
    s = _div(cmax - cmin, levels)
    inv = 1.0 / s
    n_lo = torch.round(cmin * inv)
    return {
        "scale": s,
        "inv": inv,
        "zero_point": qmin - n_lo,
        "lo_e": s * n_lo,
        "hi_e": s * (n_lo + levels),
        "cmin": cmin,
        "cmax": cmax,
        "levels": torch.tensor(levels),
    }


def portable_ulq_backward(
    g: torch.Tensor,
    x: torch.Tensor,
    clip_min: torch.Tensor,
    clip_max: torch.Tensor,
    fixed_min: bool,
    num_bits: int,
    axis: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = {
        k: _along(v, axis, x.ndim) if v.ndim else v
        for k, v in portable_ulq_params(clip_min, clip_max, fixed_min, num_bits).items()
    }
    upper, lower = x > p["hi_e"], x < p["lo_e"]
    grad_x = torch.where(upper | lower, torch.zeros_like(g), g)
    t = torch.where(upper, p["cmax"], torch.where(lower, p["cmin"], x)) * p["inv"]
    e = _div((torch.round(t) - t).double(), float(p["levels"]))
    g64 = g.double()
    dims = list(range(x.ndim)) if axis is None else [d for d in range(x.ndim) if d != axis]
    max_terms, min_terms = g64 * (e + upper), g64 * (lower.double() - e)
    if dims:  # sum(dim=[]) would reduce everything: a 1-d x along axis 0 has nothing to sum
        max_terms, min_terms = max_terms.sum(dim=dims), min_terms.sum(dim=dims)
    grad_max, grad_min = max_terms.float(), min_terms.float()
    if fixed_min:
        grad_min = torch.zeros_like(grad_min)
    return grad_x, grad_min.reshape(clip_min.shape), grad_max.reshape(clip_max.shape)


def portable_ulq_weight_backward(
    g: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, num_bits: int, axis: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC "Weight ULQ" backward: grad_weight = g (unmasked), and per channel (or for the
    tensor) sum(g * d) / sqrt(N * qmax), d = rint(t) - t inside, qmin below, qmax above."""
    qmin, qmax = qrange(num_bits)
    s = _along(scale.detach().to(torch.float32), axis, w.ndim)
    t = w * (1.0 / s)
    d = torch.round(t) - t
    d = torch.where(w > qmax * s, torch.full_like(d, qmax), d)
    d = torch.where(w < qmin * s, torch.full_like(d, qmin), d)
    terms = g.double() * d.double()
    dims = list(range(w.ndim)) if axis is None else [k for k in range(w.ndim) if k != axis]
    if dims:  # sum(dim=[]) would reduce everything
        terms = terms.sum(dim=dims)
    n = w.numel() if axis is None else w.numel() // max(1, w.shape[axis])
    grad_s = terms / math.sqrt(n * qmax) if n else torch.zeros_like(terms)
    return g, grad_s.float().reshape(scale.shape)


# ---- autograd ------------------------------------------------------------------------------


class ArqFunction(torch.autograd.Function):
    """ARQ fake quantization of weights; straight-through backward."""

    @staticmethod
    def forward(
        ctx: Any,
        w: torch.Tensor,
        channel_wise: bool,
        axis: int,
        num_bits: int,
    ) -> torch.Tensor:
        if _on_kernels(w):
            out, dst = _empty(w)
            kernels.arq(_np(w), dst, axis if channel_wise else None, num_bits)
            return out
        s = portable_arq_scale(w, channel_wise, axis, num_bits)
        return portable_fake_quant(
            w, s, torch.zeros_like(s), num_bits, axis if channel_wise else None
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return grad, None, None, None


class UlqFunction(torch.autograd.Function):
    """ULQ fake quantization with learnable clips (tensors: 0-d, or 1-d along ``axis``)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        clip_min: torch.Tensor,
        clip_max: torch.Tensor,
        fixed_min: bool,
        num_bits: int,
        axis: int | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, clip_min, clip_max)
        ctx.options = (fixed_min, num_bits, axis)
        if _on_kernels(x, clip_min, clip_max):
            out, dst = _empty(x)  # clips: 0-d per tensor, 1-d per channel, as the kernels take
            kernels.ulq_forward(
                _np(x), dst, _np(clip_min), _np(clip_max), axis, fixed_min, num_bits
            )
            return out
        p = portable_ulq_params(clip_min, clip_max, fixed_min, num_bits)
        return portable_fake_quant(
            x, p["scale"].reshape(-1), p["zero_point"].reshape(-1), num_bits, axis
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, clip_min, clip_max = ctx.saved_tensors
        fixed_min, num_bits, axis = ctx.options
        if _on_kernels(grad, x, clip_min, clip_max):
            gx, dst = _empty(x)
            lo, hi = _np(clip_min), _np(clip_max)
            # The clip gradients come back shaped like the clips.
            sums = kernels.ulq_backward(_np(grad), _np(x), dst, lo, hi, axis, fixed_min, num_bits)
            return gx, torch.from_numpy(sums[0]), torch.from_numpy(sums[1]), None, None, None
        return (
            *portable_ulq_backward(grad, x, clip_min, clip_max, fixed_min, num_bits, axis),
            None,
            None,
            None,
        )


class UlqWeightFunction(torch.autograd.Function):
    """Weight ULQ: fake quantization with a learnable symmetric scale and zero point 0
    (``scale``: 0-d, or 1-d along ``axis``); the weight gradient passes unmasked."""

    @staticmethod
    def forward(
        ctx: Any, w: torch.Tensor, scale: torch.Tensor, num_bits: int, axis: int | None
    ) -> torch.Tensor:
        ctx.save_for_backward(w, scale)
        ctx.options = (num_bits, axis)
        if _on_kernels(w, scale):
            out, dst = _empty(w)
            kernels.ulq_weight_forward(_np(w), dst, _per_channel(scale), axis, num_bits)
            return out
        s = scale.detach().reshape(-1)
        return portable_fake_quant(w, s, torch.zeros_like(s), num_bits, axis)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        w, scale = ctx.saved_tensors
        num_bits, axis = ctx.options
        if _on_kernels(grad, w, scale):
            g = grad.contiguous()
            g_np = g.detach().numpy()
            # out=grad_output: grad_weight is the incoming gradient itself, not a copy.
            grad_s = kernels.ulq_weight_backward(
                g_np, _np(w), g_np, _per_channel(scale), axis, num_bits
            )
            return g, torch.from_numpy(grad_s).reshape(scale.shape), None, None
        gw, grad_scale = portable_ulq_weight_backward(grad, w, scale, num_bits, axis)
        return gw, grad_scale, None, None


def arq_fake_quant(
    w: torch.Tensor, *, channel_wise: bool = True, axis: int = 0, num_bits: int = 8
) -> torch.Tensor:
    return ArqFunction.apply(w, channel_wise, axis, num_bits)


def ulq_fake_quant(
    x: torch.Tensor,
    clip_min: torch.Tensor,
    clip_max: torch.Tensor,
    *,
    fixed_min: bool = False,
    num_bits: int = 8,
    axis: int | None = None,
) -> torch.Tensor:
    return UlqFunction.apply(
        x,
        clip_min,
        clip_max,
        fixed_min,
        num_bits,
        axis,
    )


def ulq_weight_fake_quant(
    w: torch.Tensor, scale: torch.Tensor, *, num_bits: int = 8, axis: int | None = None
) -> torch.Tensor:
    return UlqWeightFunction.apply(w, scale, num_bits, axis)
