"""Fuzzing every public entry point (and the raw bindings) with hostile input.

Each call must either return a result that matches the NumPy reference or raise
TypeError/ValueError; it must never crash, and never modify an input it was not
asked to write. ``QATCORE_FUZZ_REPORT=FILE`` writes the count of each class of
input tried and of each outcome (see conftest.py). A long run:
``QATCORE_HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qatcore
import reference as ref
from helpers import assert_same_floats
from qatcore import _core
from strategies import f32

#: Classes of input tried and outcomes, across the session (reported by conftest.py).
TALLY: Counter[str] = Counter()

DTYPES = [
    "float32",
    "float64",
    "float16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "object",
]
LAYOUTS = ["C", "F", "strided", "reversed", "broadcast", "readonly"]


def _elements(dtype: str) -> st.SearchStrategy[Any]:
    if dtype.startswith("float"):
        width = {"float16": 16, "float32": 32, "float64": 64}[dtype]
        finite = st.floats(width=width, allow_nan=False, allow_infinity=False)
        return st.one_of(
            finite, finite, st.floats(width=width), st.sampled_from([0.5, -1.5, 127.5])
        )
    if dtype == "bool":
        return st.booleans()
    if dtype.startswith("complex"):
        return st.complex_numbers(max_magnitude=1e6, allow_nan=False, width=64)
    if dtype == "object":
        return st.sampled_from([1.0, None, "x"])
    info = np.iinfo(dtype)
    return st.integers(int(info.min), int(info.max))


@st.composite
def hostile_arrays(draw: st.DrawFn, dtypes: list[str] = DTYPES, max_dims: int = 4):
    """Any dtype (float32 half the time), shape (0-d and empty included) and memory layout."""
    dtype = draw(st.sampled_from(dtypes)) if draw(st.booleans()) else dtypes[0]
    shape = draw(
        hnp.array_shapes(
            min_dims=0 if draw(st.booleans()) else 1,
            max_dims=max_dims,
            min_side=0 if draw(st.booleans()) else 1,
            max_side=5,
        )
    )
    layout = draw(st.sampled_from(LAYOUTS))
    if dtype == "object":
        base = np.empty(shape, dtype=object)
        for idx in np.ndindex(shape):
            base[idx] = draw(_elements(dtype))
    else:
        base = draw(hnp.arrays(np.dtype(dtype), shape, elements=_elements(dtype)))
    if layout == "F":
        arr = np.asfortranarray(base)
    elif layout == "strided" and base.ndim:
        big = np.repeat(base, 2, axis=-1)
        arr = big[..., ::2]
    elif layout == "reversed" and base.ndim:
        arr = np.ascontiguousarray(base[..., ::-1])[..., ::-1]
    elif layout == "broadcast" and base.ndim and base.size:
        arr = np.broadcast_to(base.reshape(-1)[:1].reshape((1,) * base.ndim), base.shape)
    elif layout == "readonly":
        arr = base.copy()
        arr.setflags(write=False)
    else:
        arr = base
    TALLY[f"array dtype={dtype}"] += 1
    TALLY[f"array layout={layout}"] += 1
    TALLY[f"array ndim={arr.ndim}{' empty' if arr.size == 0 else ''}"] += 1
    return arr


# Valid values most of the time (so that results get checked), hostile ones often.
num_bits_values = st.one_of(
    st.integers(2, 16), st.just(8), st.integers(-2, 20), st.sampled_from([8.0, True, "8", None])
)
axis_values = st.one_of(st.integers(0, 1), st.integers(-6, 6), st.sampled_from([None, 1.0, "0"]))
bool_values = st.one_of(
    st.booleans(), st.booleans(), st.sampled_from([0, 1, "yes", None, np.bool_(True)])
)
clip_values = st.one_of(
    st.floats(f32(-10), f32(-0.01), width=32),
    st.floats(f32(0.01), f32(10), width=32),
    st.floats(width=32),
    st.integers(-10, 10),
    st.sampled_from(["1.0", None, [1.0, 2.0]]),
    hostile_arrays(dtypes=["float32", "float64", "int32", "complex64"], max_dims=1),
)


def snapshot(*arrays: Any) -> list[Any]:
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arrays]


def unchanged(before: list[Any], arrays: tuple[Any, ...], out: Any = None) -> None:
    """Inputs hold their values, except memory that ``out`` itself covers."""
    for b, a in zip(before, arrays):
        if isinstance(out, np.ndarray) and isinstance(a, np.ndarray) and np.shares_memory(a, out):
            continue
        if isinstance(a, np.ndarray):
            if a.dtype.kind == "f":
                assert np.array_equal(a, b, equal_nan=True), "an input was modified"
            else:
                assert np.array_equal(a, b), "an input was modified"


def outcome(name: str, fn, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """(ok, result or exception); anything but TypeError/ValueError fails the test."""
    try:
        result = fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        TALLY[f"{name}: {type(e).__name__}"] += 1
        return False, e
    TALLY[f"{name}: returned, checked against the reference"] += 1
    return True, result


def as_f32(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32: +-inf, as qatcore converts
        return np.asarray(x).astype(np.float32)


def out_for(draw: st.DrawFn, x: Any, name: str) -> tuple[Any, Any]:
    """(x, out): out is None, a good buffer, x itself, or a bad one (dtype, shape, layout,
    read-only, or partially overlapping x, in which case x is moved into a shared buffer)."""
    kind = draw(
        st.sampled_from(["none", "good", "self"])
        if draw(st.booleans())
        else st.sampled_from(["dtype", "shape", "strided", "readonly", "overlap", "list"])
    )
    shape = np.shape(x)
    if kind == "overlap" and not (
        isinstance(x, np.ndarray) and x.dtype == np.float32 and x.size > 1
    ):
        kind = "list"
    TALLY[f"{name} out={kind}"] += 1
    if kind == "none":
        return x, None
    if kind == "good":
        return x, np.full(shape, 7.0, np.float32)
    if kind == "self":
        return x, x
    if kind == "dtype":
        return x, np.zeros(shape, np.float64)
    if kind == "shape":
        return x, np.zeros((*shape, 2), np.float32)
    if kind == "strided":
        return x, np.zeros((*shape, 2), np.float32)[..., 0]
    if kind == "readonly":
        buf = np.zeros(shape, np.float32)
        buf.setflags(write=False)
        return x, buf
    if kind == "overlap":  # x and out one element apart inside one buffer
        buf = np.zeros(x.size + 1, np.float32)
        buf[:-1] = x.reshape(-1)
        return buf[:-1].reshape(shape), buf[1:].reshape(shape)
    return x, [0.0]


@given(data=st.data())
def test_fuzz_arq(data: st.DataObject) -> None:
    w = data.draw(hostile_arrays())
    channel_wise, axis, bits = (
        data.draw(bool_values),
        data.draw(axis_values),
        data.draw(num_bits_values),
    )
    w, out = out_for(data.draw, w, "arq")
    before = snapshot(w)
    ok, r = outcome(
        "arq", qatcore.arq, w, channel_wise=channel_wise, axis=axis, num_bits=bits, out=out
    )
    if ok:
        unchanged(before, (w,), out)
    else:
        unchanged(before, (w,))  # arq leaves w intact on error, also in place
    if ok:
        y_ref, s_ref = ref.arq(as_f32(before[0]), channel_wise, axis, bits)
        assert_same_floats(r.output, y_ref)
        assert_same_floats(r.params.scale, s_ref)


@given(data=st.data())
def test_fuzz_fake_quantize_quantize_dequantize(data: st.DataObject) -> None:
    x = data.draw(hostile_arrays())
    bits = data.draw(st.integers(2, 16))
    valid = data.draw(st.booleans())  # params that fit x, or anything
    qmin, qmax = ref.qrange(bits)
    if valid:
        axis = data.draw(st.none() | st.integers(0, x.ndim - 1)) if x.ndim else None
        n = 1 if axis is None else x.shape[axis]
        scales = st.floats(f32(1e-6), f32(1e3), width=32)
        zps = st.integers(qmin, qmax)
    else:
        axis = data.draw(st.none() | st.integers(-3, 3))
        n = data.draw(st.integers(0, 6))
        scales, zps = st.floats(width=32), st.integers(-70000, 70000)
    TALLY[f"QuantParams {'fitting x' if valid else 'arbitrary'}"] += 1
    scale = data.draw(hnp.arrays(np.float32, () if axis is None else (n,), elements=scales))
    zp = data.draw(hnp.arrays(np.int64, scale.shape, elements=zps))
    okp, params = outcome("QuantParams", qatcore.QuantParams, scale, zp, num_bits=bits, axis=axis)
    if not okp:
        params = data.draw(st.sampled_from([None, (1.0, 0), "params"]))
    x, out = out_for(data.draw, x, "fake_quantize")
    before = snapshot(x)
    ok, y = outcome("fake_quantize", qatcore.fake_quantize, x, params, out=out)
    unchanged(before, (x,), out)
    if ok:
        ax = None if params.axis is None else params.axis % x.ndim
        q_ref, y_ref = ref.fake_quant(as_f32(before[0]), params.scale, params.zero_point, bits, ax)
        assert_same_floats(y, y_ref)
        okq, codes = outcome("quantize", qatcore.quantize, before[0], params)
        if okq:
            assert np.array_equal(codes, ref.codes(q_ref, bits))
            assert_same_floats(qatcore.dequantize(codes, params), y_ref)
    q = data.draw(hostile_arrays(dtypes=["int8", "int16", "int32", "int64", "float32", "bool"]))
    before_q = snapshot(q)
    okd, back = outcome("dequantize", qatcore.dequantize, q, params)
    unchanged(before_q, (q,))
    if okd:  # float32(q - z) * s, along the params' axis
        qa = np.asarray(before_q[0]).astype(np.int64)
        ax = None if params.axis is None else params.axis % qa.ndim
        z = ref._along(params.zero_point.astype(np.int64), ax, qa.ndim)
        s = ref._along(params.scale, ax, qa.ndim)
        assert_same_floats(back, ((qa - z).astype(np.float32) * s).astype(np.float32))


@given(data=st.data())
def test_fuzz_ulq(data: st.DataObject) -> None:
    x = data.draw(hostile_arrays())
    g_kind = data.draw(st.sampled_from(["ones", "x", "hostile"]))
    TALLY[f"ulq grad_output={g_kind}"] += 1
    if g_kind == "ones":
        g = np.ones(np.shape(x), np.float32)
    else:
        g = x if g_kind == "x" else data.draw(hostile_arrays())
    clip_min, clip_max = data.draw(clip_values), data.draw(clip_values)
    fixed_min, bits = data.draw(bool_values), data.draw(num_bits_values)
    axis = data.draw(st.one_of(st.none(), st.integers(-3, 3)))
    x, out = out_for(data.draw, x, "ulq_forward")
    before = snapshot(x, g, clip_min, clip_max)
    ok, r = outcome(
        "ulq_forward",
        qatcore.ulq_forward,
        x,
        clip_min,
        clip_max,
        fixed_min=fixed_min,
        num_bits=bits,
        axis=axis,
        out=out,
    )
    unchanged(before, (x, g, clip_min, clip_max), out)
    if ok:
        ax = None if axis is None else axis % np.ndim(x)
        y_ref, _ = ref.ulq_forward(as_f32(before[0]), clip_min, clip_max, fixed_min, bits, ax)
        assert_same_floats(r.output, y_ref)
    g, out = out_for(data.draw, g, "ulq_backward")
    before = snapshot(x, g)
    ok, r = outcome(
        "ulq_backward",
        qatcore.ulq_backward,
        g,
        x,
        clip_min,
        clip_max,
        fixed_min=fixed_min,
        num_bits=bits,
        axis=axis,
        out=out,
    )
    unchanged(before, (x, g), out)
    if ok:
        ax = None if axis is None else axis % np.ndim(x)
        gx, _, _ = ref.ulq_backward(
            as_f32(before[1]), as_f32(before[0]), clip_min, clip_max, fixed_min, bits, ax
        )
        assert_same_floats(r.grad_input, gx)


@given(data=st.data())
def test_fuzz_histogram_and_ifmr(data: st.DataObject) -> None:
    hist = qatcore.Histogram(data.draw(st.sampled_from([2, 7, 64, 16384])))
    for _ in range(data.draw(st.integers(1, 3))):
        x = data.draw(hostile_arrays())
        state = hist.to_state()
        before = snapshot(x)
        ok, _ = outcome("Histogram.observe", hist.observe, x)
        unchanged(before, (x,))
        if not ok:  # bad data leaves the histogram exactly as it was
            after = hist.to_state()
            assert np.array_equal(after.pop("counts"), state.pop("counts")) and after == state
    valid = data.draw(st.booleans())
    options = {
        "num_bits": data.draw(st.integers(2, 16) if valid else num_bits_values),
        "with_offset": data.draw(st.booleans() if valid else bool_values),
        "max_percentile": data.draw(
            st.sampled_from([0.999999, 1.0, 0.9])
            if valid
            else st.one_of(st.floats(), st.sampled_from([1, "x"]))
        ),
        "search_range": data.draw(
            st.sampled_from([(0.7, 1.3), (0.5, 1.0)])
            if valid
            else st.one_of(st.tuples(st.floats(), st.floats()), st.sampled_from([1.0, "ab"]))
        ),
        "search_step": data.draw(
            st.sampled_from([0.01, 0.1])
            if valid
            else st.one_of(st.floats(), st.sampled_from([0, None]))
        ),
    }
    ok, r = outcome("ifmr(histogram)", qatcore.ifmr, hist, **options)
    if ok:  # candidates whose grid overflows float32 have an infinite loss; the choice not
        assert np.isfinite(r.losses[r.best_index]) and r.clip_min <= 0 <= r.clip_max
        assert np.isfinite([r.clip_min, r.clip_max]).all()
        assert r.params == qatcore.QuantParams(
            r.params.scale, r.params.zero_point, num_bits=r.params.num_bits
        )
    y = data.draw(hostile_arrays())
    before = snapshot(y)
    ok, r = outcome("ifmr(data)", qatcore.ifmr, y, **options)
    unchanged(before, (y,))
    if ok:
        want = ref.ifmr(
            as_f32(before[0]),
            options["num_bits"],
            options["with_offset"],
            False,
            options["max_percentile"],
            0.999999,
            options["search_range"],
            options["search_step"],
        )
        assert r.max_init == want["max_init"] and r.min_init == want["min_init"]
        np.testing.assert_allclose(r.losses, want["losses"], rtol=1e-9, atol=1e-300)


RAW_CALLS = {
    "fake_quantize": 6,
    "quantize": 6,
    "dequantize": 6,
    "arq": 4,
    "ulq_params": 4,
    "ulq_forward": 7,
    "ulq_backward": 8,
    "minmax": 1,
    "histogram_add": 4,
    "data_sq_errors": 4,
    "hist_sq_errors": 6,
    "set_isa": 1,
    "set_num_threads": 1,
    "set_grain": 1,
}
raw_args = st.one_of(
    hostile_arrays(dtypes=["float32", "float64", "int8", "int16", "int32", "int64", "bool"]),
    st.integers(-(2**40), 2**40),
    st.floats(),
    st.sampled_from([None, "avx2", "x", True]),
)


@given(name=st.sampled_from(sorted(RAW_CALLS)), data=st.data())
def test_fuzz_raw_bindings(name: str, data: st.DataObject) -> None:
    """The private module on its own rejects whatever the Python layer would have caught."""
    args = [data.draw(raw_args) for _ in range(RAW_CALLS[name])]
    if name in ("set_num_threads", "set_grain"):  # keep the suite's own settings sane
        args = [data.draw(st.integers(-5, 3))]
    with qatcore.use_backend():
        grain = _core.get_grain()
        try:
            outcome(f"_core.{name}", getattr(_core, name), *args)
        finally:
            _core.set_grain(grain)
