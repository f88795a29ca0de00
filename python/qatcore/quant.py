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
    check_int,
    check_num_bits,
    code_dtype,
    deliver,
    destination,
)

__all__ = ["QuantParams", "dequantize", "fake_quantize", "quantize"]


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
        bits = check_num_bits(self.num_bits)
        axis = None if self.axis is None else check_int(self.axis, "axis")
        scale = np.array(as_float32(self.scale, "scale"), dtype=np.float32)
        zp_in = np.asarray(self.zero_point)
        if zp_in.dtype.kind not in "iu":
            raise TypeError(f"zero_point: expected an integer array, got dtype {zp_in.dtype}")
        want_ndim = 0 if axis is None else 1
        where = "per tensor (axis=None)" if axis is None else f"per channel (axis={axis})"
        if scale.ndim != want_ndim:
            raise ValueError(
                f"scale: expected {want_ndim} dimensions {where}, got shape {scale.shape}"
            )
        if zp_in.shape != scale.shape:
            raise ValueError(
                f"zero_point: expected the shape of scale {scale.shape}, got {zp_in.shape}"
            )
        with np.errstate(divide="ignore", over="ignore"):
            ok = np.isfinite(scale) & (scale > 0) & np.isfinite(np.float32(1) / scale)
        if not ok.all():
            bad = scale[~ok].ravel()[0]
            raise ValueError(
                f"scale: expected finite positive values with a finite reciprocal, got {bad!r}"
            )
        qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if zp_in.size and (zp_in.min() < qmin or zp_in.max() > qmax):
            raise ValueError(
                f"zero_point: expected values in [{qmin}, {qmax}] for num_bits={bits}, "
                f"got range [{zp_in.min()}, {zp_in.max()}]"
            )
        self._freeze(scale, zp_in.astype(np.int32), bits, axis)

    def _freeze(
        self, scale: F32, zero_point: NDArray[np.int32], num_bits: int, axis: int | None
    ) -> None:
        """Set the fields of this frozen instance, with read-only arrays."""
        scale.setflags(write=False)
        zero_point.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)
        object.__setattr__(self, "num_bits", num_bits)
        object.__setattr__(self, "axis", axis)

    @classmethod
    def from_kernel(
        cls, scale: F32, zero_point: NDArray[np.int32], num_bits: int, axis: int | None
    ) -> QuantParams:
        """Params that a qatcore kernel just computed: valid by construction, so the
        checks of ``__init__`` (a measurable cost per training step) are skipped."""
        params = object.__new__(cls)
        params._freeze(scale, zero_point, num_bits, axis)
        return params

    @property
    def qmin(self) -> int:
        return -(1 << (self.num_bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.num_bits - 1)) - 1

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
    Bit-identical to PyTorch's fake_quantize_per_{tensor,channel}_affine.
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
        if codes.size and (codes.min() < p.qmin or codes.max() > p.qmax):
            raise ValueError(
                f"q: expected codes in [{p.qmin}, {p.qmax}] for num_bits={p.num_bits}, "
                f"got range [{codes.min()}, {codes.max()}]"
            )
        codes = codes.astype(want)
    src = c_contiguous(codes)
    dst = destination(out, src, np.dtype(np.float32))
    _core.dequantize(src, dst, *p.kernel_args())
    return deliver(out, dst)
