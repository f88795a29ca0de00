# Hand-written stubs for the native module (csrc/bindings/python/, one register_*.cpp per area).
from typing import Any

import numpy as np
from numpy.typing import NDArray

__version__: str
EPS: float  # 2**-23, SPEC "Notation"
ISA_LEVELS: tuple[str, ...]  # lowest first

def isa() -> str: ...
def best_isa() -> str: ...
def available_isas() -> list[str]: ...
def set_isa(isa: str) -> str: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def openmp_threads() -> bool: ...
def parallel_jobs() -> int: ...
def grains() -> dict[str, int]: ...
def wake_chunks() -> int: ...
def openmp_allowed() -> bool: ...
def set_openmp_allowed(allowed: bool) -> None: ...
def get_executor() -> str: ...
def set_executor(name: str) -> None: ...
def get_grain() -> int: ...
def set_grain(n: int) -> None: ...
def qrange(num_bits: int) -> tuple[int, int]: ...
def check_params(
    scale: NDArray[np.float32],
    zero_point: NDArray[np.int32] | NDArray[np.int64],
    num_bits: int,
    axis: int | None,
) -> None: ...
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
def ulq_params(
    clip_min: NDArray[np.float32], clip_max: NDArray[np.float32], fixed_min: bool, num_bits: int
) -> tuple[NDArray[np.float32], NDArray[np.int32]]: ...
def ulq_forward(
    x: NDArray[np.float32],
    out: NDArray[np.float32],
    clip_min: NDArray[np.float32],
    clip_max: NDArray[np.float32],
    axis: int | None,
    fixed_min: bool,
    num_bits: int,
) -> tuple[NDArray[np.float32], NDArray[np.int32]]: ...
def ulq_backward(
    grad_output: NDArray[np.float32],
    x: NDArray[np.float32],
    out: NDArray[np.float32],
    clip_min: NDArray[np.float32],
    clip_max: NDArray[np.float32],
    axis: int | None,
    fixed_min: bool,
    num_bits: int,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]: ...
def ulq_weight_forward(
    w: NDArray[np.float32],
    out: NDArray[np.float32],
    scale: NDArray[np.float32],
    axis: int | None,
    num_bits: int,
) -> None: ...
def ulq_weight_backward(
    grad_output: NDArray[np.float32],
    w: NDArray[np.float32],
    out: NDArray[np.float32],
    scale: NDArray[np.float32],
    axis: int | None,
    num_bits: int,
) -> NDArray[np.float32]: ...
def minmax(x: NDArray[np.float32]) -> tuple[float, float, bool]: ...
def histogram_add(
    x: NDArray[np.float32], counts: NDArray[np.int64], inv_width: float, offset: float
) -> None: ...
def data_sq_errors(
    x: NDArray[np.float32],
    scale: NDArray[np.float32],
    zero_point: NDArray[np.int32],
    num_bits: int,
) -> NDArray[np.float64]: ...
def hist_sq_errors(
    lo: NDArray[np.float64],
    hi: NDArray[np.float64],
    count: NDArray[np.float64],
    scale: NDArray[np.float32],
    zero_point: NDArray[np.int32],
    num_bits: int,
) -> NDArray[np.float64]: ...
