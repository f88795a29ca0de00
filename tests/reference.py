"""SPEC.md written plainly in NumPy: the definition the kernels are tested against.

Readable first, fast never. Nothing here imports qatcore.
"""

from __future__ import annotations

import numpy as np

EPS = np.float32(2.0**-23)  # FLT_EPSILON


def qrange(num_bits: int) -> tuple[int, int]:
    return -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1


def _along(values: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along `axis` of an ndim-d tensor."""
    if axis is None:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def fake_quant(x, scale, zero_point, num_bits, axis=None):
    """SPEC "Notation". Returns (q, y): q as float64 integers (NaN where x is NaN), y float32.

    q = clamp(rint(x * inv_s) + z, qmin, qmax);  y = float32(q - z) * s
    """
    qmin, qmax = qrange(num_bits)
    x = np.asarray(x, dtype=np.float32)
    s = _along(np.asarray(scale, dtype=np.float32), axis, x.ndim)
    z = _along(np.asarray(zero_point, dtype=np.int64), axis, x.ndim).astype(np.float64)
    inv_s = np.float32(1) / s
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.rint(x * inv_s)  # float32 product, then round half to even
        q = np.clip(t.astype(np.float64) + z, qmin, qmax)  # NaN stays NaN
        # May overflow to inf for |x| within an ulp of FLT_MAX: qmax * (FLT_MAX / qmax).
        y = (q - z).astype(np.float32) * s
    return q, y.astype(np.float32)


def codes(q: np.ndarray, num_bits: int) -> np.ndarray:
    """The integer dtype qatcore returns codes in (int8 up to 8 bits, else int16)."""
    return q.astype(np.int8 if num_bits <= 8 else np.int16)


def arq_scale(w, channel_wise=True, axis=0, num_bits=8):
    """SPEC "ARQ": per channel along `axis` (or one scale), the smallest scale with no clipping.

    hi = max(max(w), 0);  lo = min(min(w), 0);  s = max(hi / qmax, -lo / -qmin);  s < EPS -> 1
    """
    qmin, qmax = qrange(num_bits)
    w = np.asarray(w, dtype=np.float32)
    if channel_wise:
        axis = axis % w.ndim
        others = tuple(d for d in range(w.ndim) if d != axis)
    else:
        others = None
    hi = np.max(w, axis=others, initial=np.float32(0))  # initial=0 is the max(., 0)
    lo = np.min(w, axis=others, initial=np.float32(0))
    s = np.maximum(
        np.asarray(hi, np.float32) / np.float32(qmax),
        -np.asarray(lo, np.float32) / np.float32(-qmin),
    )
    s = np.where(s >= EPS, s, np.float32(1)).astype(np.float32)
    return s.reshape(-1) if channel_wise else s.reshape(())


def arq(w, channel_wise=True, axis=0, num_bits=8):
    """SPEC "ARQ": (fake-quantized w, scales)."""
    w = np.asarray(w, dtype=np.float32)
    s = arq_scale(w, channel_wise, axis, num_bits)
    ax = axis % w.ndim if channel_wise else None
    _, y = fake_quant(w, s, np.zeros(s.shape, np.int64), num_bits, ax)
    return y, s
