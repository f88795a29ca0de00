"""The SPEC written in PyTorch ops: what runs on any device and dtype that no other
implementation is registered for (``_dispatch``), and the tests' oracle for the kernels.

Every function here takes and returns tensors on the input's device. The signatures of
``arq``, ``ulq_forward``, ``ulq_backward``, ``ulq_weight_forward`` and
``ulq_weight_backward`` are those every implementation of those operations has.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qatcore import EPS, qrange


def _along(values: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    if axis is None:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def _div(a: torch.Tensor, d: float) -> torch.Tensor:
    """``a / d`` rounded once, as the SPEC divides. PyTorch's CUDA kernels multiply by the
    reciprocal when the divisor is a Python or CPU scalar, an ulp off the quotient at
    times; a 0-d tensor on ``a``'s device is divided by."""
    return a / torch.tensor(d, dtype=a.dtype, device=a.device)


def fake_quant(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int, axis: int | None
) -> torch.Tensor:
    qmin, qmax = qrange(num_bits)
    s = _along(scale.to(torch.float32), axis, x.ndim)
    z = _along(zero_point.to(torch.float32), axis, x.ndim)
    q = torch.clamp(torch.round(x * (1.0 / s)) + z, qmin, qmax)  # round: half to even
    return (q - z) * s


def arq_scale(w: torch.Tensor, channel_wise: bool, axis: int, num_bits: int) -> torch.Tensor:
    qmin, qmax = qrange(num_bits)
    if channel_wise:
        flat = w.detach().movedim(axis, 0).reshape(w.shape[axis], -1)
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    else:
        lo, hi = w.detach().amin().reshape(1), w.detach().amax().reshape(1)
    s = torch.maximum(_div(hi.clamp_min(0), qmax), _div(-lo.clamp_max(0), -qmin))
    return torch.where(s >= EPS, s, torch.ones_like(s))


def ulq_params(
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


def ulq_backward(
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
        for k, v in ulq_params(clip_min, clip_max, fixed_min, num_bits).items()
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


def ulq_weight_backward(
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


def arq(w: torch.Tensor, channel_wise: bool, axis: int, num_bits: int) -> torch.Tensor:
    s = arq_scale(w, channel_wise, axis, num_bits)
    return fake_quant(w, s, torch.zeros_like(s), num_bits, axis if channel_wise else None)


def ulq_forward(
    x: torch.Tensor,
    clip_min: torch.Tensor,
    clip_max: torch.Tensor,
    fixed_min: bool,
    num_bits: int,
    axis: int | None,
) -> torch.Tensor:
    p = ulq_params(clip_min, clip_max, fixed_min, num_bits)
    return fake_quant(x, p["scale"].reshape(-1), p["zero_point"].reshape(-1), num_bits, axis)


def ulq_weight_forward(
    w: torch.Tensor, scale: torch.Tensor, num_bits: int, axis: int | None
) -> torch.Tensor:
    s = scale.detach().reshape(-1)
    return fake_quant(w, s, torch.zeros_like(s), num_bits, axis)
