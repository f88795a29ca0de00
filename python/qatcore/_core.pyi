# Hand-written stubs for the native module (csrc/bindings.cpp).
from typing import Any

import numpy as np
from numpy.typing import NDArray

__version__: str

def isa() -> str: ...
def best_isa() -> str: ...
def available_isas() -> list[str]: ...
def set_isa(isa: str) -> str: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def get_grain() -> int: ...
def set_grain(n: int) -> None: ...
def fake_quantize(
    x: NDArray[np.float32],
    out: NDArray[np.float32],
    scale: NDArray[np.float32],
    zero_point: NDArray[np.int32],
    axis: int | None,
    num_bits: int,
) -> None: ...
def quantize(
    x: NDArray[np.float32],
    out: NDArray[Any],
    scale: NDArray[np.float32],
    zero_point: NDArray[np.int32],
    axis: int | None,
    num_bits: int,
) -> None: ...
def dequantize(
    q: NDArray[Any],
    out: NDArray[np.float32],
    scale: NDArray[np.float32],
    zero_point: NDArray[np.int32],
    axis: int | None,
    num_bits: int,
) -> None: ...
def arq(
    w: NDArray[np.float32],
    out: NDArray[np.float32] | None,
    axis: int | None,
    num_bits: int,
) -> NDArray[np.float32]: ...
