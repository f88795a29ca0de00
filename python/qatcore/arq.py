"""ARQ: symmetric per-channel weight quantization (SPEC "ARQ", ``arq_retrain``)."""

from __future__ import annotations

from dataclasses import dataclass

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

__all__ = ["ArqResult", "arq", "arq_params"]


@dataclass(frozen=True, eq=False)
class ArqResult:
    """``output``: the fake-quantized weights; ``params``: their scales (zero point 0)."""

    output: F32
    params: QuantParams


def _run(
    w: ArrayLike,
    channel_wise: object,
    axis: object,
    num_bits: object,
    out: object,
    want_output: bool,
) -> tuple[F32 | None, QuantParams]:
    per_channel = check_bool(channel_wise, "channel_wise")
    bits = check_native_int(num_bits, "num_bits")
    src = c_contiguous(as_float32(w, "w"))
    ax = check_native_int(axis, "axis") if per_channel else None
    dst = destination(out, src, np.dtype(np.float32)) if want_output else None
    scales = _core.arq(src, dst, ax, bits)  # checks num_bits and axis
    shape = scales.shape if per_channel else ()
    axis_index = None if ax is None else ax % src.ndim
    params = QuantParams(scales.reshape(shape), np.zeros(shape, np.int32), bits, axis_index)
    output = None if dst is None else deliver(out, dst)  # type: ignore[arg-type]
    return output, params


def arq_params(
    w: ArrayLike, *, channel_wise: bool = True, axis: int = 0, num_bits: int = 8
) -> QuantParams:
    """The ARQ scales of ``w`` (one per index of ``axis``, or one for the tensor)."""
    return _run(w, channel_wise, axis, num_bits, None, want_output=False)[1]


def arq(
    w: ArrayLike,
    *,
    channel_wise: bool = True,
    axis: int = 0,
    num_bits: int = 8,
    out: NDArray[np.float32] | None = None,
) -> ArqResult:
    """Fake-quantize weights with ARQ's symmetric scales.

    Per channel (``channel_wise=True``, channels along ``axis``) or per tensor.
    Each channel's scale is the smallest at which none of its values clip. A
    channel laid out contiguously is reduced and quantized in one pass while it
    is in cache. ``out`` may be ``w`` itself. NaN or inf in ``w`` raise
    ``ValueError``; ``w`` is then unchanged (also when ``out`` is ``w``), while a
    separate ``out`` holds unspecified values.
    """
    output, params = _run(w, channel_wise, axis, num_bits, out, want_output=True)
    assert output is not None
    return ArqResult(output=output, params=params)
