"""Input conversion shared by the public functions: dtypes, Python types, ``out`` buffers.

Checks of kernel arguments (shapes, axes, bit widths, scales, zero points) are not
here: ``_core`` owns them and their messages. Python converts its inputs and checks
only what ``_core`` cannot see (Python types such as bool versus int).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core

F32 = NDArray[np.float32]


def as_float32(x: ArrayLike, name: str) -> F32:
    """``x`` as a float32 array: float32 input is used as is, other real floats converted.

    Values beyond float32's range become +-inf, which each function then treats as
    the SPEC says (clipped, or a ValueError where a scale is chosen from the data).
    """
    arr = np.asarray(x)
    if arr.dtype == np.float32:
        return arr
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore"):
            return arr.astype(np.float32)
    raise TypeError(
        f"{name}: expected a real floating-point array (float16, float32 or float64), "
        f"got dtype {arr.dtype}"
    )


def c_contiguous(arr: NDArray[Any]) -> NDArray[Any]:
    """``arr`` itself when C-contiguous, else a C-contiguous copy (same values)."""
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    return operator.index(value)


def check_native_int(value: object, name: str) -> int:
    """An int that ``_core`` takes as a C int (a bit width, an axis). Its range is checked
    there; one that does not fit 32 bits cannot even reach it, so it is refused here."""
    v = check_int(value, name)
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"{name}: expected an integer that fits in 32 bits, got {v}")
    return v


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_num_bits(num_bits: object) -> int:
    """``num_bits`` as an int, checked by ``_core`` (the owner of the supported widths)."""
    bits = check_native_int(num_bits, "num_bits")
    _core.qrange(bits)
    return bits


def code_dtype(num_bits: int) -> np.dtype[Any]:
    """Integer codes are int8 up to 8 bits, int16 up to 16."""
    return np.dtype(np.int8 if num_bits <= 8 else np.int16)


def destination(
    out: object, sources: NDArray[Any] | tuple[NDArray[Any], ...], dtype: np.dtype[Any]
) -> NDArray[Any]:
    """The buffer a kernel reading ``sources`` should write for the caller's ``out``.

    ``out`` itself when it is C-contiguous and, for each source, either is that
    source's buffer or does not overlap it; otherwise a fresh array, copied into
    ``out`` by ``deliver``.
    """
    srcs = sources if isinstance(sources, tuple) else (sources,)
    shape = srcs[0].shape
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise ValueError(f"out: expected dtype {dtype}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out: expected shape {shape}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out: expected a writable array, got a read-only one")
    # may_share_memory (bounds only) is cheap; compare addresses only when it says yes.
    if out.flags.c_contiguous and all(
        out is src or not np.may_share_memory(out, src) or out.ctypes.data == src.ctypes.data
        for src in srcs
    ):
        return out
    return np.empty(shape, dtype=dtype)


def deliver(out: NDArray[Any] | None, dst: NDArray[Any]) -> NDArray[Any]:
    """Finish a call that wrote ``dst`` (from ``destination``): the caller's result."""
    if out is None or out is dst:
        return dst
    np.copyto(out, dst)
    return out
