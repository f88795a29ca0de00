"""Hypothesis strategies for tensors and quantization parameters."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as ref


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


@st.composite
def near_ties(draw: st.DrawFn, shape, axis: int | None, bits: int):
    """(x, scale, zero_point): scales with random significands (shape () per tensor,
    else one per index of axis), zero points anywhere in the range, and x at
    (k + 1/2) * s in float32 or one ulp either side, where rint(x * (1/s)) and
    rint(x / s) differ for a few percent of values (the SPEC multiplies; dividing would
    be a bug). Drawn from a seeded generator: hypothesis would shrink scales to powers
    of two, where the two agree."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # At least 256 values, so that some of them differ: the shape grows, its rank stays.
    shape = [max(d, 1) for d in shape] or [1]
    shape[-1] *= -(-256 // math.prod(shape))
    n = 1 if axis is None else shape[axis]
    scale = (rng.uniform(1, 2, n) * 2.0 ** rng.integers(-12, 8, n)).astype(np.float32)
    s = scale.reshape(()) if axis is None else ref._along(scale, axis, len(shape))
    k = rng.integers(-300, 300, shape)
    half = np.asarray((k + 0.5).astype(np.float32) * s, dtype=np.float32)
    step = rng.integers(-1, 2, shape)
    beside = np.nextafter(half, np.where(step > 0, np.float32(np.inf), np.float32(-np.inf)))
    x = np.asarray(np.where(step == 0, half, beside), dtype=np.float32)
    qmin, qmax = ref.qrange(bits)
    zp = rng.integers(qmin, qmax + 1, n).astype(np.int32)
    if axis is None:
        return x, scale.reshape(()), zp.reshape(())
    return x, scale, zp


# Clip values: ordinary, narrow, wide, positive clip_min, negative clip_max, equal.
clip_values = st.one_of(
    st.floats(f32(-10), f32(10), width=32),
    st.floats(f32(-1e-6), f32(1e-6), width=32),
    st.floats(f32(-1e6), f32(1e6), width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0]),
)


@st.composite
def ulq_case(draw: st.DrawFn, allow_nan: bool = False):
    """(x, g, clip_min, clip_max, fixed_min, bits, axis) with x hitting the effective bounds."""
    bits = draw(num_bits)
    shape = draw(
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)
        | st.tuples(st.integers(0, 3), st.integers(0, 70))
    )
    axis = draw(st.none() | st.integers(0, len(shape) - 1)) if shape else None
    n = 1 if axis is None else shape[axis]
    cmin = draw(hnp.arrays(np.float32, (n,), elements=clip_values))
    cmax = draw(hnp.arrays(np.float32, (n,), elements=clip_values))
    if draw(st.booleans()):
        cmax = cmin.copy()  # clip_max == clip_min
    fixed_min = draw(st.booleans())
    p = ref.ulq_params(cmin, cmax, fixed_min, bits)
    # Values near the clips, exactly on the effective bounds, and anywhere.
    bounds = [float(v) for v in np.concatenate([p["lo_e"], p["hi_e"], cmin, cmax, [0.0]])]
    scale = float(np.max(np.abs(np.concatenate([cmin, cmax, [1e-3]]))))
    elements = st.one_of(
        st.sampled_from(bounds),
        st.floats(f32(-2 * scale), f32(2 * scale), width=32),
        st.floats(width=32, allow_nan=allow_nan, allow_infinity=allow_nan),
    )
    x = draw(hnp.arrays(np.float32, shape, elements=elements))
    g = draw(hnp.arrays(np.float32, shape, elements=st.floats(f32(-10), f32(10), width=32)))
    if axis is None:
        cmin, cmax = cmin.reshape(()), cmax.reshape(())
    return x, g, cmin, cmax, fixed_min, bits, axis


@st.composite
def ulq_tie_case(draw: st.DrawFn):
    """Like ulq_case, with clips whose ULQ scale is a power of two 2**e (clip_min =
    n_lo * 2**e, clip_max = (n_lo + L) * 2**e) and x at (k + 1/2) * 2**e or on the grid:
    every x * inv_s is an exact rounding tie or an integer, inside the range and beyond."""
    bits = draw(num_bits)
    levels = 2**bits - 1
    shape = draw(
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
        | st.tuples(st.integers(0, 3), st.integers(0, 40))
    )
    axis = draw(st.none() | st.integers(0, len(shape) - 1)) if shape else None
    n = 1 if axis is None else shape[axis]
    fixed_min = draw(st.booleans())
    # e >= -7 keeps clip_max >= L * EPS, so the scale is exactly 2**e.
    e = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-7, 10)))
    n_lo = (
        np.zeros(n, np.int64)
        if fixed_min
        else draw(hnp.arrays(np.int64, (n,), elements=st.integers(-(levels - 1), 0)))
    )
    s = 2.0**e
    cmin = (n_lo * s).astype(np.float32)
    cmax = ((n_lo + levels) * s).astype(np.float32)
    k = draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, levels + 2)))
    half = draw(hnp.arrays(np.bool_, shape, elements=st.sampled_from([True, True, False])))
    s_x = s.reshape(-1)[0] if axis is None else ref._along(s, axis, len(shape))
    lo_x = n_lo.reshape(-1)[0] if axis is None else ref._along(n_lo, axis, len(shape))
    x = np.asarray((k + lo_x + 0.5 * half) * s_x, dtype=np.float32)
    g = draw(hnp.arrays(np.float32, shape, elements=st.floats(f32(-10), f32(10), width=32)))
    assert np.array_equal(ref.ulq_params(cmin, cmax, fixed_min, bits)["scale"], s), "not 2**e"
    if axis is None:
        cmin, cmax = cmin.reshape(()), cmax.reshape(())
    return x, g, cmin, cmax, fixed_min, bits, axis


@st.composite
def ulq_weight_case(draw: st.DrawFn, allow_nan: bool = False):
    """(w, g, scale, bits, axis) for weight ULQ: a shape from `shapes`, per tensor or along
    a random axis; scales powers of two (then every w on the grid or half-way between two
    codes is an exact rounding tie) or random; w on the grid, half-way, on and beyond the
    ends of the range [qmin * s, qmax * s], or anything finite (NaN and inf too with
    allow_nan)."""
    bits = draw(num_bits)
    qmin, qmax = ref.qrange(bits)
    shape = draw(shapes)
    axis = draw(st.none() | st.integers(0, len(shape) - 1)) if shape else None
    n = 1 if axis is None else shape[axis]
    if draw(st.booleans()):
        e = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-20, 20)))
        scale = (2.0**e).astype(np.float32)
    else:
        scale = draw(
            hnp.arrays(np.float32, (n,), elements=st.floats(f32(1e-6), f32(1e3), width=32))
        )
    s = scale.reshape(()) if axis is None else ref._along(scale, axis, len(shape))
    # Codes anywhere, and often exactly at or one past the ends of the range.
    ends = st.sampled_from([qmin - 1, qmin, qmax, qmax + 1])
    k = draw(hnp.arrays(np.int64, shape, elements=st.integers(qmin - 3, qmax + 3) | ends))
    half = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    grid = np.asarray((k + 0.5 * half) * s, dtype=np.float32)
    others = finite_f32 | st.sampled_from([np.nan, np.inf, -np.inf]) if allow_nan else finite_f32
    anything = draw(hnp.arrays(np.float32, shape, elements=others))
    pick = draw(hnp.arrays(np.bool_, shape, elements=st.sampled_from([True, True, False])))
    w = np.asarray(np.where(pick, grid, anything), dtype=np.float32)
    g = draw(hnp.arrays(np.float32, shape, elements=st.floats(f32(-10), f32(10), width=32)))
    if axis is None:
        scale = scale.reshape(())
    return w, g, scale, bits, axis
