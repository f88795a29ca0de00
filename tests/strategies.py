"""Hypothesis strategies for tensors and quantization parameters."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def f32(v: float) -> float:
    """v rounded to float32 (hypothesis wants bounds that float32 holds exactly)."""
    return float(np.float32(v))


# Anything finite float32 can hold (hypothesis favours the extremes: huge,
# subnormal, +-0), moderate values, and a few constants that make all-equal
# channels likely.
finite_f32 = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(f32(-1e30), f32(1e30), width=32),
    st.floats(f32(-1e-30), f32(1e-30), width=32),
    st.floats(-8.0, 8.0, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -3.5]),
)

shapes = st.one_of(
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    # Long rows leave tails after every vector width (4, 8, 16 lanes).
    st.tuples(st.integers(0, 4), st.integers(0, 75)),
    st.tuples(st.integers(0, 300)),
    st.just(()),
)

num_bits = st.one_of(st.just(8), st.integers(2, 16))


@st.composite
def float_tensors(draw: st.DrawFn, shape=shapes, elements=finite_f32) -> np.ndarray:
    shp = draw(shape)
    return draw(hnp.arrays(np.float32, shp, elements=elements))


@st.composite
def tie_weights(draw: st.DrawFn, num_bits_st=num_bits) -> tuple[np.ndarray, int]:
    """Weights whose ARQ scale is a power of two 2**e and whose other values sit
    exactly half-way between codes: every one is a rounding tie."""
    bits = draw(num_bits_st)
    qmax = 2 ** (bits - 1) - 1
    e = draw(st.integers(-20, 20))
    rows = draw(st.integers(1, 4))
    cols = draw(st.integers(1, 40))
    k = draw(hnp.arrays(np.int64, (rows, cols), elements=st.integers(-qmax - 1, qmax - 1)))
    w = ((k + 0.5) * 2.0**e).astype(np.float32)
    w[:, 0] = qmax * 2.0**e  # pins every row's scale to exactly 2**e
    return w, bits


@st.composite
def params_for(draw: st.DrawFn, x: np.ndarray, bits: int, power_of_two: bool = False):
    """(scale, zero_point, axis) valid for x: per tensor or along a random axis."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    axis = draw(st.one_of(st.none(), st.integers(0, x.ndim - 1))) if x.ndim else None
    n = 1 if axis is None else x.shape[axis]
    if power_of_two:
        scales = st.integers(-30, 30).map(lambda e: float(2.0**e))
    else:
        scales = st.floats(f32(1e-7), f32(1e4), width=32)
    scale = draw(hnp.arrays(np.float32, (n,), elements=scales))
    zp = draw(hnp.arrays(np.int32, (n,), elements=st.integers(qmin, qmax)))
    if axis is None:
        return scale.reshape(()), zp.reshape(()), None
    return scale, zp, axis
