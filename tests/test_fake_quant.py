"""fake_quantize / quantize / dequantize against the reference and against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qatcore
import reference as ref
from helpers import assert_same_floats, on_every_backend, require_torch
from strategies import f32, float_tensors, near_ties, num_bits, params_for

# Finite values plus the non-finite ones fake quantization must handle.
with_specials = st.one_of(
    st.floats(width=32),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
)


def ties(scale_exp: int) -> st.SearchStrategy[float]:
    return st.integers(-70000, 70000).map(lambda k: float((k + 0.5) * 2.0**scale_exp))


@given(data=st.data(), bits=num_bits)
def test_fake_quantize_matches_reference(data: st.DataObject, bits: int) -> None:
    x = data.draw(float_tensors(elements=st.one_of(with_specials, st.floats(-300, 300, width=32))))
    scale, zp, axis = data.draw(params_for(x, bits))
    if data.draw(st.booleans()):
        x, scale, zp = data.draw(near_ties(x.shape, axis, bits))
    params = qatcore.QuantParams(scale, zp, num_bits=bits, axis=axis)
    q_ref, y_ref = ref.fake_quant(x, scale, zp, bits, axis)
    for label, y in on_every_backend(lambda: qatcore.fake_quantize(x, params)):
        assert_same_floats(y, y_ref, label)
    if np.isnan(x).any():
        with pytest.raises(ValueError, match="^x: expected values that are not NaN"):
            qatcore.quantize(x, params)
        return
    for label, codes in on_every_backend(lambda: qatcore.quantize(x, params)):
        assert codes.dtype == (np.int8 if bits <= 8 else np.int16)
        assert np.array_equal(codes, ref.codes(q_ref, bits)), label


@given(data=st.data(), bits=num_bits)
def test_dequantize_of_quantize_is_fake_quantize(data: st.DataObject, bits: int) -> None:
    x = data.draw(float_tensors(elements=st.floats(width=32, allow_nan=False)))
    scale, zp, axis = data.draw(params_for(x, bits))
    params = qatcore.QuantParams(scale, zp, num_bits=bits, axis=axis)
    for label, (y, back) in on_every_backend(
        lambda: (
            qatcore.fake_quantize(x, params),
            qatcore.dequantize(qatcore.quantize(x, params), params),
        )
    ):
        assert_same_floats(back, y, label)


@given(data=st.data(), bits=num_bits, e=st.integers(-30, 30))
def test_rounding_ties_go_to_even(data: st.DataObject, bits: int, e: int) -> None:
    x = data.draw(float_tensors(elements=ties(e)))
    _, zp, axis = data.draw(params_for(x, bits))
    scale = np.full(np.shape(zp), 2.0**e, np.float32)
    params = qatcore.QuantParams(scale, zp, num_bits=bits, axis=axis)
    _, y_ref = ref.fake_quant(x, scale, zp, bits, axis)
    for label, y in on_every_backend(lambda: qatcore.fake_quantize(x, params)):
        assert_same_floats(y, y_ref, label)


def test_ties_and_signs_known_values() -> None:
    p = qatcore.QuantParams(np.float32(1.0), np.int32(0))
    x = np.array(
        [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.3, 126.5, 127.5, -128.5, np.inf, -np.inf], np.float32
    )
    y = qatcore.fake_quantize(x, p)
    assert y.tolist() == [0, 2, 2, 0, -2, -2, 0, 126, 127, -128, 127, -128]
    assert not np.signbit(y[[0, 3, 6]]).any(), "a zero code dequantizes to +0"
    assert np.isnan(qatcore.fake_quantize(np.float32([np.nan]), p)).all()


def test_non_contiguous_and_out_and_in_place() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 10, 7)).astype(np.float32)
    view = base[:, ::3, :].transpose(2, 0, 1)  # neither C nor F contiguous
    params = qatcore.QuantParams(
        rng.uniform(0.01, 0.1, 7).astype(np.float32),
        rng.integers(-5, 5, 7).astype(np.int32),
        axis=0,
    )
    expected = qatcore.fake_quantize(np.ascontiguousarray(view), params)
    assert_same_floats(qatcore.fake_quantize(view, params), expected)
    out = np.empty_like(expected)
    assert qatcore.fake_quantize(view, params, out=out) is out
    assert_same_floats(out, expected)
    strided_out = np.empty((7, 6, 8), np.float32)[:, :, ::2]
    assert qatcore.fake_quantize(view, params, out=strided_out) is strided_out
    assert_same_floats(strided_out, expected)
    inplace = np.ascontiguousarray(view)
    assert qatcore.fake_quantize(inplace, params, out=inplace) is inplace
    assert_same_floats(inplace, expected)
    # out overlapping the input without being it: computed as if separate.
    buf = np.ascontiguousarray(view).ravel().copy()
    src = buf[: buf.size - 1]
    shifted = buf[1:]
    expected_flat = qatcore.fake_quantize(src.copy(), qatcore.QuantParams(np.float32(0.05), 0))
    qatcore.fake_quantize(src, qatcore.QuantParams(np.float32(0.05), 0), out=shifted)
    assert_same_floats(shifted, expected_flat)


def test_other_float_dtypes_are_converted() -> None:
    x64 = np.linspace(-3, 3, 101)
    p = qatcore.QuantParams(np.float32(0.1), np.int32(2))
    assert_same_floats(
        qatcore.fake_quantize(x64, p), qatcore.fake_quantize(x64.astype(np.float32), p)
    )
    assert qatcore.fake_quantize(x64.astype(np.float16), p).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.bool_, np.complex64, object])
def test_fake_quantize_rejects_non_float_dtypes(dtype: type) -> None:
    with pytest.raises(TypeError, match="^x: expected a real floating-point array"):
        qatcore.fake_quantize(np.zeros(3, dtype=dtype), qatcore.QuantParams(np.float32(1), 0))


def test_quant_params_validation() -> None:
    with pytest.raises(ValueError, match="^scale: expected finite positive"):
        qatcore.QuantParams(np.float32(-1), 0)
    with pytest.raises(ValueError, match="^scale: expected finite positive"):
        qatcore.QuantParams(np.float32([1, 0]), np.int32([0, 0]), axis=0)
    with pytest.raises(ValueError, match="^scale: expected finite positive"):
        qatcore.QuantParams(np.float32(1e-45), 0)  # 1/scale overflows
    with pytest.raises(ValueError, match=r"^zero_point: expected values in \[-128, 127\]"):
        qatcore.QuantParams(np.float32(1), 128)
    with pytest.raises(ValueError, match=r"^zero_point: expected values in \[-8, 7\]"):
        qatcore.QuantParams(np.float32(1), -9, num_bits=4)
    with pytest.raises(TypeError, match="^zero_point: expected an integer array"):
        qatcore.QuantParams(np.float32(1), 0.5)
    with pytest.raises(ValueError, match="^scale: expected 0 dimensions per tensor"):
        qatcore.QuantParams(np.float32([1, 2]), np.int32([0, 0]))
    with pytest.raises(ValueError, match="^scale: expected 1 dimensions per channel"):
        qatcore.QuantParams(np.float32(1), 0, axis=0)
    with pytest.raises(ValueError, match="^zero_point: expected the shape of scale"):
        qatcore.QuantParams(np.float32([1, 2]), np.int32([0]), axis=0)
    with pytest.raises(ValueError, match="^num_bits: expected an integer in"):
        qatcore.QuantParams(np.float32(1), 0, num_bits=17)
    p = qatcore.QuantParams([0.5, 0.25], [1, 2], axis=1)
    assert p.scale.dtype == np.float32 and p.zero_point.dtype == np.int32
    assert p == qatcore.QuantParams(np.float32([0.5, 0.25]), np.int64([1, 2]), axis=1)
    with pytest.raises(ValueError):
        p.scale[0] = 1.0  # read-only: params cannot change under a result


def test_grid_and_eps_have_one_definition() -> None:
    """qmin, qmax and EPS come from _core (csrc/ops/qrange.h), which checks num_bits."""
    from qatcore import _core

    assert _core.EPS == 2.0**-23
    for bits in range(2, 17):
        assert _core.qrange(bits) == ref.qrange(bits)
        p = qatcore.QuantParams(np.float32(1), 0, num_bits=bits)
        assert (p.qmin, p.qmax) == ref.qrange(bits)
    for bad in (1, 17, -3):
        with pytest.raises(ValueError, match=r"^num_bits: expected an integer in \[2, 16\]"):
            _core.qrange(bad)


def test_quant_params_checks_are_the_kernels() -> None:
    """QuantParams validates through _core.check_params: the same messages as the kernels."""
    from qatcore import _core

    with pytest.raises(ValueError, match=r"^zero_point: expected values in \[-128, 127\]"):
        _core.check_params(np.float32([1.0]), np.int64([2**40]), 8, 0)
    with pytest.raises(ValueError, match=r"^zero_point: expected values in \[-128, 127\]"):
        qatcore.QuantParams(np.float32([1.0]), np.uint64([2**64 - 1]), axis=0)  # no wrap-around
    with pytest.raises(TypeError, match="^zero_point: expected an int32 or int64 array"):
        _core.check_params(np.array(1, np.float32), np.array(0, np.int16), 8, None)
    scale = np.float32([1, 9, 2, 9])[::2]
    strided = qatcore.QuantParams(scale, np.int32([3, 9, 4, 9])[::2], axis=0)
    assert strided.zero_point.tolist() == [3, 4] and strided.scale.tolist() == [1, 2]


def test_bad_arguments_name_themselves() -> None:
    x = np.zeros((3, 4), np.float32)
    p4 = qatcore.QuantParams(np.ones(4, np.float32), np.zeros(4, np.int32), axis=0)
    with pytest.raises(ValueError, match="^scale: expected a 1-d array of length 3"):
        qatcore.fake_quantize(x, p4)
    p_axis = qatcore.QuantParams(np.ones(4, np.float32), np.zeros(4, np.int32), axis=2)
    with pytest.raises(ValueError, match=r"^axis: expected an integer in \[-2, 2\)"):
        qatcore.fake_quantize(x, p_axis)
    p = qatcore.QuantParams(np.float32(1), 0)
    with pytest.raises(TypeError, match="^params: expected a QuantParams"):
        qatcore.fake_quantize(x, (1.0, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^out: expected shape \(3, 4\)"):
        qatcore.fake_quantize(x, p, out=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="^out: expected dtype float32"):
        qatcore.fake_quantize(x, p, out=np.zeros((3, 4), np.float64))
    with pytest.raises(ValueError, match="^x: expected values that are not NaN"):
        qatcore.quantize(np.float32([1, np.nan]), p)
    with pytest.raises(TypeError, match="^q: expected an integer array"):
        qatcore.dequantize(x, p)
    p4bit = qatcore.QuantParams(np.float32(1), 0, num_bits=4)
    with pytest.raises(ValueError, match=r"^q: expected codes in \[-8, 7\]"):
        qatcore.dequantize(np.int8([8]), p4bit)
    assert qatcore.dequantize(np.int64([-8, 7]), p4bit).tolist() == [-8, 7]


def test_core_rejects_unsafe_buffers() -> None:
    """The private bindings validate on their own: no path from Python to a crash."""
    from qatcore import _core

    x = np.zeros(4, np.float32)
    s, z = np.ones(1, np.float32), np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="^x: expected a C-contiguous float32 array"):
        _core.fake_quantize(np.zeros(8, np.float32)[::2], x, s, z, None, 8)
    with pytest.raises(ValueError, match="^out: expected a C-contiguous writable"):
        ro = np.zeros(4, np.float32)
        ro.setflags(write=False)
        _core.fake_quantize(x, ro, s, z, None, 8)
    with pytest.raises(ValueError, match="^out: expected either x itself"):
        buf = np.zeros(5, np.float32)
        _core.fake_quantize(buf[:4], buf[1:], s, z, None, 8)
    with pytest.raises(TypeError, match="^scale: expected a C-contiguous float32"):
        _core.fake_quantize(x, x.copy(), s.astype(np.float64), z, None, 8)
    with pytest.raises(ValueError, match="^scale: expected finite positive"):
        _core.fake_quantize(x, x.copy(), np.float32([np.nan]), z, None, 8)
    with pytest.raises(ValueError, match="^zero_point: expected values in"):
        _core.fake_quantize(x, x.copy(), s, np.int32([200]), None, 8)
    with pytest.raises(TypeError, match="^out: expected a C-contiguous writable int8"):
        _core.quantize(x, np.zeros(4, np.int16), s, z, None, 8)


def test_bit_identical_to_torch_per_tensor() -> None:
    torch = require_torch()
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32) * 3,
            np.float32([1e30, -1e30, 3e38, -3e38, 1e-30, 0.0, -0.0]),
            ((np.arange(-300, 300) + 0.5) * 0.0625).astype(np.float32),  # ties at scale 1/16
        ]
    )
    for scale, zp, bits in [
        (0.0625, 0, 8),
        (0.0123, -17, 8),
        (1e-3, 100, 8),
        (0.5, 3, 4),
        (1e-4, -1000, 16),
    ]:
        qmin, qmax = ref.qrange(bits)
        params = qatcore.QuantParams(np.float32(scale), zp, num_bits=bits)
        expected = torch.fake_quantize_per_tensor_affine(
            torch.from_numpy(x), float(np.float32(scale)), zp, qmin, qmax
        ).numpy()
        for label, y in on_every_backend(lambda p=params: qatcore.fake_quantize(x, p), grain=None):
            assert_same_floats(y, expected, f"{label} scale={scale} zp={zp}")


@given(data=st.data(), bits=num_bits)
def test_bit_identical_to_torch(data: st.DataObject, bits: int) -> None:
    """Against torch.fake_quantize_per_{tensor,channel}_affine on finite input.

    PyTorch's per-channel CPU kernel converts rint(x / scale) to int64 before it
    clamps, so |x / scale| >= 2**63 overflows there (1e30 becomes qmin); that
    range is PyTorch's bug, not a difference in the contract, and is left out.
    """
    torch = require_torch()
    x = data.draw(float_tensors(elements=st.floats(f32(-1e6), f32(1e6), width=32)))
    scale, zp, axis = data.draw(params_for(x, bits))
    assume(axis is None or x.shape[axis] > 0)  # torch cannot take zero channels
    qmin, qmax = ref.qrange(bits)
    params = qatcore.QuantParams(scale, zp, num_bits=bits, axis=axis)
    xt = torch.from_numpy(x.copy())
    if axis is None:
        expected = torch.fake_quantize_per_tensor_affine(xt, float(scale), int(zp), qmin, qmax)
    else:
        expected = torch.fake_quantize_per_channel_affine(
            xt, torch.from_numpy(scale), torch.from_numpy(zp), axis, qmin, qmax
        )
    for label, y in on_every_backend(lambda: qatcore.fake_quantize(x, params)):
        assert_same_floats(y, expected.numpy(), label)


@given(x=hnp.arrays(np.float32, st.integers(0, 50), elements=st.floats(-10, 10, width=32)))
def test_codes_roundtrip_16_bit(x: np.ndarray) -> None:
    p = qatcore.QuantParams(np.float32(1e-3), np.int32(-5), num_bits=16)
    codes = qatcore.quantize(x, p)
    assert codes.dtype == np.int16
    assert_same_floats(qatcore.dequantize(codes, p), qatcore.fake_quantize(x, p))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: qatcore.QuantParams(np.float32(1), np.int32(0), num_bits=2**40), "num_bits"),
        (lambda: qatcore.arq(np.ones((2, 2), np.float32), num_bits=2**40), "num_bits"),
        (lambda: qatcore.arq(np.ones((2, 2), np.float32), axis=2**70), "axis"),
        (
            lambda: qatcore.ulq_forward(np.ones(3, np.float32), -1.0, 1.0, num_bits=-(2**33)),
            "num_bits",
        ),
        (lambda: qatcore.ulq_params(np.ones(2), np.ones(2), axis=2**40), "axis"),
        (lambda: qatcore.qrange(2**40), "num_bits"),
    ],
)
def test_integers_beyond_a_native_int_name_the_argument(call, name) -> None:
    with pytest.raises(ValueError, match=f"^{name}: expected an integer that fits in 32 bits"):
        call()


def test_qrange_and_eps_are_the_grid_the_kernels_use() -> None:
    assert qatcore.qrange(8) == (-128, 127) and qatcore.qrange(2) == (-2, 1)
    assert qatcore.EPS == 2.0**-23
    with pytest.raises(ValueError, match=r"^num_bits: expected an integer in \[2, 16\], got 17"):
        qatcore.qrange(17)
