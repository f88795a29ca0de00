"""Quantization parameters and the fake-quantization primitives (SPEC "Notation")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import (
    F32,
    as_float32,
    c_contiguous,
    check_native_int,
    code_dtype,
    deliver,
    destination,
)

__all__ = ["EPS", "QuantParams", "dequantize", "fake_quantize", "qrange", "quantize"]

#: ``2**-23`` (FLT_EPSILON): the smallest scale a quantizer keeps (SPEC "Notation").
EPS: float = _core.EPS


def qrange(num_bits: int) -> tuple[int, int]:
    """``(qmin, qmax)`` of a ``num_bits`` grid: ``-2**(b-1)`` and ``2**(b-1) - 1``, b in 2..16."""
    return _core.qrange(check_native_int(num_bits, "num_bits"))


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Scale and zero point of an affine integer grid, per tensor or per channel.

    ``scale`` is float32 and ``zero_point`` int32, both of shape ``()`` when
    ``axis`` is None (per tensor) or ``(C,)`` for C channels along ``axis``.
    A value x maps to the code ``clamp(rint(x / scale) + zero_point, qmin, qmax)``
    and back to ``(code - zero_point) * scale``. The arrays are read-only copies.
    """

    scale: NDArray[np.float32]
    zero_point: NDArray[np.int32]
    num_bits: int = 8
    axis: int | None = None

    def __post_init__(self) -> None:
        # Conversion here; every check of the values and shapes is _core.check_params.
        bits = check_native_int(self.num_bits, "num_bits")
        axis = None if self.axis is None else check_native_int(self.axis, "axis")
        scale = np.array(as_float32(self.scale, "scale"), order="C")  # a private copy
        zp = np.asarray(self.zero_point)
        if zp.dtype.kind not in "iu":
            raise TypeError(f"zero_point: expected an integer array, got dtype {zp.dtype}")
        if zp.dtype == np.uint64:  # to int64 without wrapping: too large stays too large
            zp = np.minimum(zp, np.uint64(np.iinfo(np.int64).max))
        zp = np.array(zp, dtype=np.int32 if zp.dtype == np.int32 else np.int64, order="C")
        _core.check_params(scale, zp, bits, axis)
        zero_point = zp if zp.dtype == np.int32 else zp.astype(np.int32)  # exact once checked
        scale.setflags(write=False)
        zero_point.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)
        object.__setattr__(self, "num_bits", bits)
        object.__setattr__(self, "axis", axis)

    @property
    def qmin(self) -> int:
        return _core.qrange(self.num_bits)[0]

    @property
    def qmax(self) -> int:
        return _core.qrange(self.num_bits)[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantParams):
            return NotImplemented
        return (
            self.num_bits == other.num_bits
            and self.axis == other.axis
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    __hash__ = None  # type: ignore[assignment]

    def kernel_args(self) -> tuple[F32, NDArray[np.int32], int | None, int]:
        """(scale, zero_point, axis, num_bits) in the form ``_core`` takes."""
        return self.scale.reshape(-1), self.zero_point.reshape(-1), self.axis, self.num_bits


def _check_params(params: object) -> QuantParams:
    if not isinstance(params, QuantParams):
        raise TypeError(f"params: expected a QuantParams, got {type(params).__name__}")
    return params


def fake_quantize(
    x: ArrayLike, params: QuantParams, *, out: NDArray[np.float32] | None = None
) -> F32:
    """Quantize and dequantize ``x`` in one pass: float32, same shape as ``x``.

    NaN stays NaN; +-inf clip to the ends of the grid. ``out`` may be ``x``.
    Bit-identical to PyTorch's fake_quantize_per_{tensor,channel}_affine on
    finite ``x`` and, per tensor, on +-inf too. PyTorch differs on NaN (it gives
    a finite code) and, per channel, where ``|x / scale| >= 2**63`` (+inf
    included), which it maps to ``qmin``.
    """
    p = _check_params(params)
    src = c_contiguous(as_float32(x, "x"))
    dst = destination(out, src, np.dtype(np.float32))
    _core.fake_quantize(src, dst, *p.kernel_args())
    return deliver(out, dst)


def quantize(x: ArrayLike, params: QuantParams) -> NDArray[Any]:
    """Integer codes of ``x``: int8 for ``num_bits <= 8``, else int16.

    NaN has no code and raises ``ValueError``.
    """
    p = _check_params(params)
    src = c_contiguous(as_float32(x, "x"))
    codes = np.empty(src.shape, dtype=code_dtype(p.num_bits))
    _core.quantize(src, codes, *p.kernel_args())
    return codes


def dequantize(q: ArrayLike, params: QuantParams, *, out: NDArray[np.float32] | None = None) -> F32:
    """Float32 values of integer codes: ``(q - zero_point) * scale``.

    ``dequantize(quantize(x, p), p)`` equals ``fake_quantize(x, p)`` exactly.
    """
    p = _check_params(params)
    codes = np.asarray(q)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"q: expected an integer array of codes, got dtype {codes.dtype}")
    want = code_dtype(p.num_bits)
    if codes.dtype != want or p.num_bits not in (8, 16):
        # Guards the narrowing to the code dtype below (and codes the grid cannot hold).
        qmin, qmax = _core.qrange(p.num_bits)
        if codes.size and (codes.min() < qmin or codes.max() > qmax):
            raise ValueError(
                f"q: expected codes in [{qmin}, {qmax}] for num_bits={p.num_bits}, "
                f"got range [{codes.min()}, {codes.max()}]"
            )
        codes = codes.astype(want)
    src = c_contiguous(codes)
    dst = destination(out, src, np.dtype(np.float32))
    _core.dequantize(src, dst, *p.kernel_args())
    return deliver(out, dst)
