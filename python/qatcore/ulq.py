"""ULQ: learnable-clip fake quantization of activations (SPEC "ULQ"), and weight ULQ, a
learnable symmetric scale with zero point 0 (SPEC "Weight ULQ", ``ulq_quantize`` on
weights); forward and backward of both."""

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
    check_bool,
    check_native_int,
    deliver,
    destination,
)
from .fake_quant import QuantParams

__all__ = [
    "UlqForward",
    "UlqGrads",
    "UlqWeightForward",
    "UlqWeightGrads",
    "ulq_backward",
    "ulq_forward",
    "ulq_params",
    "ulq_weight_backward",
    "ulq_weight_forward",
]


@dataclass(frozen=True, eq=False)
class UlqForward:
    """``output``: fake-quantized ``x``; ``params``: the effective scale and zero point."""

    output: F32
    params: QuantParams


@dataclass(frozen=True, eq=False)
class UlqGrads:
    """Gradients of the loss: ``grad_input`` (shape of x) and the clips' (shape of the clips)."""

    grad_input: F32
    grad_clip_min: F32
    grad_clip_max: F32


@dataclass(frozen=True, eq=False)
class UlqWeightForward:
    """``output``: the fake-quantized weights; ``params``: the scale and zero point 0."""

    output: F32
    params: QuantParams


@dataclass(frozen=True, eq=False)
class UlqWeightGrads:
    """``grad_weight`` (shape of w) and ``grad_scale`` (shape of the scale)."""

    grad_weight: F32
    grad_scale: F32


def _per_channel(value: ArrayLike, name: str, per_tensor: bool) -> F32:
    """A clip or scale as a C-contiguous float32 array for ``_core``: a number per tensor
    becomes shape (1,); per channel, ``_core`` checks the shape (1-d, one per channel)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a real number or a float array, got dtype {arr.dtype}")
    wide = arr
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32, copy=False)
    if wide.dtype.itemsize > 4 and np.isfinite(wide).all() and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected values within float32's range, got {wide!r}")
    if per_tensor:
        if arr.ndim != 0:
            raise ValueError(
                f"{name}: expected a scalar per tensor (axis=None), got shape {arr.shape}"
            )
        return arr.reshape(1)
    return c_contiguous(arr)


def _clips(clip_min: ArrayLike, clip_max: ArrayLike, per_tensor: bool) -> tuple[F32, F32]:
    return (
        _per_channel(clip_min, "clip_min", per_tensor),
        _per_channel(clip_max, "clip_max", per_tensor),
    )


def _params(scale: F32, zero_point: NDArray[np.int32], bits: int, axis: int | None) -> QuantParams:
    shape = () if axis is None else scale.shape
    return QuantParams(scale.reshape(shape), zero_point.reshape(shape), bits, axis)


def ulq_params(
    clip_min: ArrayLike,
    clip_max: ArrayLike,
    *,
    fixed_min: bool = False,
    num_bits: int = 8,
    axis: int | None = None,
) -> QuantParams:
    """The scale and zero point that ULQ's clips imply.

    ``clip_min``/``clip_max`` are numbers (per tensor, ``axis=None``) or 1-d arrays
    of one entry per channel along ``axis``. The lower clip is moved to 0 when it
    is positive (or when ``fixed_min``), the upper one up to ``L * EPS``, and the
    range is then shifted so that 0 is exactly representable.
    """
    fixed = check_bool(fixed_min, "fixed_min")
    bits = check_native_int(num_bits, "num_bits")
    ax = None if axis is None else check_native_int(axis, "axis")
    lo, hi = _clips(clip_min, clip_max, per_tensor=ax is None)
    scale, zp = _core.ulq_params(lo, hi, fixed, bits)
    return _params(scale, zp, bits, ax)


def _prepare(
    x: ArrayLike,
    clip_min: ArrayLike,
    clip_max: ArrayLike,
    fixed_min: object,
    num_bits: object,
    axis: object,
) -> tuple[F32, F32, F32, bool, int, int | None]:
    """Converted arguments of ulq_forward/ulq_backward (``_core`` checks their values)."""
    fixed = check_bool(fixed_min, "fixed_min")
    bits = check_native_int(num_bits, "num_bits")
    src = c_contiguous(as_float32(x, "x"))
    ax = None if axis is None else check_native_int(axis, "axis")
    lo, hi = _clips(clip_min, clip_max, per_tensor=ax is None)
    return src, lo, hi, fixed, bits, ax


def ulq_forward(
    x: ArrayLike,
    clip_min: ArrayLike,
    clip_max: ArrayLike,
    *,
    fixed_min: bool = False,
    num_bits: int = 8,
    axis: int | None = None,
    out: NDArray[np.float32] | None = None,
) -> UlqForward:
    """Fake-quantize ``x`` between learnable clips. ``out`` may be ``x``. NaN propagates."""
    src, lo, hi, fixed, bits, ax = _prepare(x, clip_min, clip_max, fixed_min, num_bits, axis)
    dst = destination(out, src, np.dtype(np.float32))
    scale, zp = _core.ulq_forward(src, dst, lo, hi, ax, fixed, bits)
    axis_index = None if ax is None else ax % src.ndim  # valid: _core accepted it
    return UlqForward(output=deliver(out, dst), params=_params(scale, zp, bits, axis_index))


def ulq_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    clip_min: ArrayLike,
    clip_max: ArrayLike,
    *,
    fixed_min: bool = False,
    num_bits: int = 8,
    axis: int | None = None,
    out: NDArray[np.float32] | None = None,
) -> UlqGrads:
    """Gradients of ULQ with respect to ``x`` and both clips, in one fused pass.

    ``grad_input`` passes ``grad_output`` inside the effective range and is 0
    outside; the clip gradients are float64 sums (per tensor or per channel)
    returned as float32, bit-identical for any thread count and ISA level.
    ``out`` receives ``grad_input`` and may be ``grad_output`` or ``x``. With
    ``fixed_min`` the lower clip is 0 and its gradient exactly 0. A NaN in ``x``
    or ``grad_output`` makes the clip gradients NaN.
    """
    src, lo, hi, fixed, bits, ax = _prepare(x, clip_min, clip_max, fixed_min, num_bits, axis)
    g = c_contiguous(as_float32(grad_output, "grad_output"))
    dst = destination(out, (src, g), np.dtype(np.float32))
    grad_min, grad_max = _core.ulq_backward(g, src, dst, lo, hi, ax, fixed, bits)
    shape: tuple[Any, ...] = () if ax is None else grad_min.shape
    return UlqGrads(
        grad_input=deliver(out, dst),
        grad_clip_min=grad_min.reshape(shape),
        grad_clip_max=grad_max.reshape(shape),
    )


def _prepare_weight(
    w: ArrayLike, scale: ArrayLike, num_bits: object, axis: object
) -> tuple[F32, F32, int, int | None]:
    """Converted arguments of ulq_weight_forward/ulq_weight_backward (``_core`` checks
    their values)."""
    bits = check_native_int(num_bits, "num_bits")
    src = c_contiguous(as_float32(w, "w"))
    ax = None if axis is None else check_native_int(axis, "axis")
    return src, _per_channel(scale, "scale", per_tensor=ax is None), bits, ax


def ulq_weight_forward(
    w: ArrayLike,
    scale: ArrayLike,
    *,
    num_bits: int = 8,
    axis: int | None = None,
    out: NDArray[np.float32] | None = None,
) -> UlqWeightForward:
    """Weight ULQ forward: ``w`` fake-quantized with the learnable symmetric ``scale`` and
    zero point 0, bit-identical to ARQ's output for the same scale.

    ``scale`` is a number (per tensor, ``axis=None``) or a 1-d array of one positive
    value per channel along ``axis``. ``out`` may be ``w``. NaN propagates.
    """
    src, s, bits, ax = _prepare_weight(w, scale, num_bits, axis)
    dst = destination(out, src, np.dtype(np.float32))
    _core.ulq_weight_forward(src, dst, s, ax, bits)
    axis_index = None if ax is None else ax % src.ndim  # valid: _core accepted it
    params = _params(s, np.zeros(s.shape, np.int32), bits, axis_index)
    return UlqWeightForward(output=deliver(out, dst), params=params)


def ulq_weight_backward(
    grad_output: ArrayLike,
    w: ArrayLike,
    scale: ArrayLike,
    *,
    num_bits: int = 8,
    axis: int | None = None,
    out: NDArray[np.float32] | None = None,
) -> UlqWeightGrads:
    """Gradients of weight ULQ with respect to ``w`` and the scale, in one fused pass.

    ``grad_weight`` is ``grad_output`` unmasked (straight-through, as AMCT); the scale
    gradient of each channel (or of the tensor) is ``sum(g * d) / sqrt(N * qmax)``, a
    float64 sum returned as float32, bit-identical for any thread count and ISA level
    (SPEC "Weight ULQ"). ``out`` receives ``grad_weight``: pass ``out=grad_output`` to
    skip the copy (nothing is written then). A NaN in ``w`` or ``grad_output`` makes
    the scale gradient NaN.
    """
    src, s, bits, ax = _prepare_weight(w, scale, num_bits, axis)
    g = c_contiguous(as_float32(grad_output, "grad_output"))
    dst = destination(out, (src, g), np.dtype(np.float32))
    grad_scale = _core.ulq_weight_backward(g, src, dst, s, ax, bits)
    return UlqWeightGrads(
        grad_weight=deliver(out, dst),
        grad_scale=grad_scale.reshape(() if ax is None else grad_scale.shape),
    )
