"""ULQ forward and backward against the reference, a surrogate derivative and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qatcore
import reference as ref
from helpers import (
    assert_clip_grads_close,
    assert_same_floats,
    on_every_backend,
    order_sensitive,
    require_torch,
)
from strategies import f32, ulq_case, ulq_tie_case

# Half the cases are exact rounding ties (power-of-two scales, x = (k + 1/2) * s).
ulq_cases = st.one_of(ulq_case(allow_nan=True), ulq_tie_case())


@given(case=ulq_cases)
def test_ulq_forward_matches_reference(case) -> None:
    x, _, cmin, cmax, fixed_min, bits, axis = case
    y_ref, p = ref.ulq_forward(x, cmin, cmax, fixed_min, bits, axis)
    for label, r in on_every_backend(
        lambda: qatcore.ulq_forward(x, cmin, cmax, fixed_min=fixed_min, num_bits=bits, axis=axis)
    ):
        assert_same_floats(r.output, y_ref, label)
        assert_same_floats(r.params.scale, p["scale"].reshape(np.shape(cmin)), label)
        assert np.array_equal(r.params.zero_point, p["zero_point"].reshape(np.shape(cmin))), label
        assert r.params.axis == axis and r.params.num_bits == bits
    params = qatcore.ulq_params(cmin, cmax, fixed_min=fixed_min, num_bits=bits, axis=axis)
    assert params == r.params


@given(case=ulq_cases)
def test_ulq_backward_matches_reference(case) -> None:
    x, g, cmin, cmax, fixed_min, bits, axis = case
    gx_ref, gmin_ref, gmax_ref = ref.ulq_backward(g, x, cmin, cmax, fixed_min, bits, axis)
    _, exact_min, exact_max = ref.ulq_backward_exact(g, x, cmin, cmax, fixed_min, bits, axis)
    results = list(
        on_every_backend(
            lambda: qatcore.ulq_backward(
                g, x, cmin, cmax, fixed_min=fixed_min, num_bits=bits, axis=axis
            )
        )
    )
    for label, r in results:
        assert_same_floats(r.grad_input, gx_ref, label)
        assert r.grad_clip_min.shape == r.grad_clip_max.shape == np.shape(cmin)
        assert r.grad_clip_min.dtype == r.grad_clip_max.dtype == np.float32
        assert_clip_grads_close(r.grad_clip_max, gmax_ref, f"{label} grad_clip_max")
        assert_clip_grads_close(r.grad_clip_min, gmin_ref, f"{label} grad_clip_min")
        if fixed_min:
            assert not r.grad_clip_min.any() and not np.signbit(r.grad_clip_min).any()
        # SPEC "Summation order": the same bits at every ISA level and thread count.
        assert_same_floats(r.grad_clip_max, exact_max, label)
        assert_same_floats(r.grad_clip_min, exact_min, label)


def test_nan_in_backward_poisons_the_clip_gradients() -> None:
    x = np.float32([0.5, np.nan, -3.0, 7.0])
    g = np.ones(4, np.float32)
    r = qatcore.ulq_backward(g, x, -1.0, 2.0)
    assert np.isnan(r.grad_clip_min) and np.isnan(r.grad_clip_max)
    assert r.grad_input.tolist()[0] == 1.0 and r.grad_input.tolist()[2:] == [0.0, 0.0]
    r = qatcore.ulq_backward(np.float32([1, np.nan, 1, 1]), np.float32([0.5, 0.5, 3, 3]), -1.0, 2.0)
    assert np.isnan(r.grad_clip_max)
    assert np.isnan(qatcore.ulq_forward(x, -1.0, 2.0).output[1])


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((64, 256, 7, 7), None),  # pieces of one long row
        ((2, 3, 40_000), None),
        ((8, 64, 30, 30), 1),  # pieces of whole short rows
        ((4096, 96), 1),  # the channel axis last: groups of rows
        ((70_000, 3), 1),
        ((3, 50_000), 0),
        ((2**14 - 1,), None),  # one piece, on each side of its size
        ((2**14 + 1,), None),
        ((47,), None),  # vector steps of 16 and 8, and the rest
        ((3, 2, 17), 1),
    ],
)
def test_ulq_sums_follow_the_spec_order(shape: tuple[int, ...], axis: int | None) -> None:
    """Clip gradients equal, to the bit, the SPEC's sums taken in "Summation order", at
    every ISA level and thread count with the real chunking, on inputs whose float32
    result changes when any two additions change places."""
    rng = np.random.default_rng(5)
    x, g = order_sensitive(shape, axis, rng)
    n = 1 if axis is None else shape[axis]
    cmin = rng.uniform(-2, -0.5, n).astype(np.float32)
    cmax = rng.uniform(0.5, 3, n).astype(np.float32)
    if axis is None:
        cmin, cmax = cmin.reshape(()), cmax.reshape(())
    gx_ref, gmin_ref, gmax_ref = ref.ulq_backward_exact(g, x, cmin, cmax, False, 8, axis)
    for label, r in on_every_backend(
        lambda: qatcore.ulq_backward(g, x, cmin, cmax, axis=axis), grain=None
    ):
        assert_same_floats(r.grad_input, gx_ref, label)
        assert_same_floats(r.grad_clip_max, gmax_ref, label)
        assert_same_floats(r.grad_clip_min, gmin_ref, label)


def surrogate_loss(g, x, cmin_clip, cmax_clip, clip_min, clip_max, fixed_min, bits):
    """sum(g * y) with y = s' * (rint(t0) - t0) + x_c, the straight-through surrogate.

    Codes and masks are frozen at the unperturbed clips (t0, upper, lower); only
    s' = (cmax' - cmin') / L and the clipped x_c follow the perturbed clips.
    """
    p0 = ref.ulq_params(clip_min, clip_max, fixed_min, bits)
    upper, lower = x > p0["hi_e"], x < p0["lo_e"]
    t0 = np.where(upper, p0["cmax"], np.where(lower, p0["cmin"], x)) * p0["inv_scale"]
    frac = (np.rint(t0) - t0).astype(np.float64)
    cmin_eff = 0.0 if fixed_min else min(cmin_clip, 0.0)
    cmax_eff = max(cmax_clip, float(p0["levels"] * ref.EPS))
    s = (cmax_eff - cmin_eff) / float(p0["levels"])
    x_c = np.where(upper, cmax_eff, np.where(lower, cmin_eff, x.astype(np.float64)))
    return float(np.sum(g.astype(np.float64) * (s * frac + x_c)))


@given(
    x=hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(f32(-4), f32(4), width=32)),
    clip_min=st.floats(f32(-3), f32(-0.25), width=32),
    clip_max=st.floats(f32(0.25), f32(3), width=32),
    fixed_min=st.booleans(),
    bits=st.sampled_from([4, 8]),
    seed=st.integers(0, 2**32 - 1),
)
def test_clip_gradients_are_the_straight_through_derivative(
    x: np.ndarray, clip_min: float, clip_max: float, fixed_min: bool, bits: int, seed: int
) -> None:
    """Central differences of the surrogate match grad_clip_min / grad_clip_max.

    The surrogate is linear in each clip once codes and masks are frozen, so the
    central difference is exact up to float64 rounding: about 1e-16 * sum|g * y| / h,
    far below the float32 rounding of the kernel's result (2**-24 relative).
    Tolerance: 1e-5 relative plus 1e-5 absolute, a hundred times that float32 step,
    with no dependence on rounding ties (the codes are frozen, ties included).
    """
    g = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    r = qatcore.ulq_backward(g, x, clip_min, clip_max, fixed_min=fixed_min, num_bits=bits)
    h = 1e-3
    args = (clip_min, clip_max, fixed_min, bits)
    d_max = (
        surrogate_loss(g, x, clip_min, clip_max + h, *args)
        - surrogate_loss(g, x, clip_min, clip_max - h, *args)
    ) / (2 * h)
    d_min = (
        surrogate_loss(g, x, clip_min + h, clip_max, *args)
        - surrogate_loss(g, x, clip_min - h, clip_max, *args)
    ) / (2 * h)
    assert float(r.grad_clip_max) == pytest.approx(d_max, rel=1e-5, abs=1e-5)
    if fixed_min:
        assert float(r.grad_clip_min) == 0.0 and d_min == 0.0
    else:
        assert float(r.grad_clip_min) == pytest.approx(d_min, rel=1e-5, abs=1e-5)


@given(case=st.one_of(ulq_case(), ulq_tie_case()))
def test_ulq_forward_bit_identical_to_torch(case) -> None:
    torch = require_torch()
    x, _, cmin, cmax, fixed_min, bits, axis = case
    assume(axis is None or x.shape[axis] > 0)
    p = qatcore.ulq_params(cmin, cmax, fixed_min=fixed_min, num_bits=bits, axis=axis)
    # PyTorch converts rint(x / s) to int64 before clamping (see the fake_quant tests).
    assume(x.size == 0 or np.abs(x).max() / np.float64(p.scale.min()) < 2.0**62)
    qmin, qmax = ref.qrange(bits)
    xt = torch.from_numpy(x.copy())
    if axis is None:
        expected = torch.fake_quantize_per_tensor_affine(
            xt, float(p.scale), int(p.zero_point), qmin, qmax
        )
    else:
        expected = torch.fake_quantize_per_channel_affine(
            xt,
            torch.from_numpy(p.scale.copy()),
            torch.from_numpy(p.zero_point.copy()),
            axis,
            qmin,
            qmax,
        )
    y = qatcore.ulq_forward(x, cmin, cmax, fixed_min=fixed_min, num_bits=bits, axis=axis).output
    assert_same_floats(y, expected.numpy())


def test_ulq_known_values() -> None:
    p = qatcore.ulq_params(-1.0, 2.0)  # s = 3/255, n_lo = rint(-85) = -85, z = -128 + 85
    assert p.scale == np.float32(3) / np.float32(255) and p.zero_point == -43
    p = qatcore.ulq_params(0.5, 2.0)  # clip_min > 0 moves to 0
    assert p.zero_point == -128 and p.scale == np.float32(2) / np.float32(255)
    p = qatcore.ulq_params(-1.0, -2.0)  # clip_max < 0 moves up to L * EPS
    assert p.scale == (np.float32(255 * 2.0**-23) + np.float32(1)) / np.float32(255)
    p = qatcore.ulq_params(-1.0, 2.0, fixed_min=True)
    assert p.zero_point == -128
    pc = qatcore.ulq_params(np.float32([-1, -2]), np.float32([1, 2]), axis=1)
    assert pc.axis == 1 and pc.scale.shape == (2,)


def test_out_buffers_and_aliasing() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 33)).astype(np.float32)
    g = rng.standard_normal((5, 33)).astype(np.float32)
    want = qatcore.ulq_backward(g, x, -1.0, 1.0)
    g2 = g.copy()
    r = qatcore.ulq_backward(g2, x, -1.0, 1.0, out=g2)  # grad_input over grad_output
    assert r.grad_input is g2
    assert_same_floats(g2, want.grad_input)
    assert r.grad_clip_max == want.grad_clip_max and r.grad_clip_min == want.grad_clip_min
    x2 = x.copy()
    assert_same_floats(qatcore.ulq_backward(g, x2, -1.0, 1.0, out=x2).grad_input, want.grad_input)
    view = np.asfortranarray(x)
    assert_same_floats(qatcore.ulq_backward(g, view, -1.0, 1.0).grad_input, want.grad_input)
    fwd = qatcore.ulq_forward(x, -1.0, 1.0)
    x3 = x.copy()
    assert qatcore.ulq_forward(x3, -1.0, 1.0, out=x3).output is x3
    assert_same_floats(x3, fwd.output)


def test_ulq_bad_input_names_the_argument() -> None:
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"^grad_output: expected the shape of x \(3, 4\)"):
        qatcore.ulq_backward(np.zeros((4, 3), np.float32), x, -1.0, 1.0)
    with pytest.raises(ValueError, match="^clip_min: expected a 1-d array of length 4"):
        qatcore.ulq_forward(x, np.float32([-1, -1, -1]), np.float32([1, 1, 1]), axis=1)
    with pytest.raises(ValueError, match="^clip_max: expected a scalar per tensor"):
        qatcore.ulq_forward(x, -1.0, np.float32([1, 1]))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="^clip_max: expected finite values"):
            qatcore.ulq_forward(x, -1.0, bad)
        with pytest.raises(ValueError, match="^clip_min: expected finite values"):
            qatcore.ulq_backward(x, x, bad, 1.0)
    with pytest.raises(ValueError, match="^clip_max: expected clip_max - clip_min to be finite"):
        qatcore.ulq_forward(x, -3e38, 3e38)
    with pytest.raises(TypeError, match="^x: expected a real floating-point array"):
        qatcore.ulq_forward(np.zeros(3, np.int32), -1.0, 1.0)
    with pytest.raises(TypeError, match="^grad_output: expected a real floating-point array"):
        qatcore.ulq_backward(np.zeros(3, np.int64), np.zeros(3, np.float32), -1.0, 1.0)
    with pytest.raises(TypeError, match="^clip_min: expected a real number"):
        qatcore.ulq_forward(x, "low", 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^fixed_min: expected True or False"):
        qatcore.ulq_forward(x, -1.0, 1.0, fixed_min=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^axis: expected an integer in \[-2, 2\)"):
        qatcore.ulq_forward(x, np.float32([-1]), np.float32([1]), axis=2)
    with pytest.raises(ValueError, match=r"^num_bits: expected an integer in \[2, 16\]"):
        qatcore.ulq_backward(x, x, -1.0, 1.0, num_bits=1)
    with pytest.raises(ValueError, match="^out: expected dtype float32"):
        qatcore.ulq_backward(x, x, -1.0, 1.0, out=np.zeros((3, 4)))
    assert qatcore.ulq_forward(np.zeros((0, 4), np.float32), -1.0, 1.0).output.shape == (0, 4)
    empty = qatcore.ulq_backward(np.zeros(0, np.float32), np.zeros(0, np.float32), -1.0, 1.0)
    assert empty.grad_clip_max == 0 and empty.grad_clip_min == 0


def test_core_rejects_unsafe_ulq_calls() -> None:
    from qatcore import _core

    x = np.zeros(4, np.float32)
    lo, hi = np.float32([-1]), np.float32([1])
    with pytest.raises(ValueError, match="^out: expected either grad_output itself"):
        buf = np.zeros(5, np.float32)
        _core.ulq_backward(buf[:4], x, buf[1:], lo, hi, None, False, 8)
    with pytest.raises(ValueError, match="^clip_min: expected a 1-d array of length 1"):
        _core.ulq_forward(x, x.copy(), np.float32([-1, -1]), hi, None, False, 8)
    with pytest.raises(ValueError, match="^clip_min: expected a 1-d array"):
        _core.ulq_params(np.zeros((1, 1), np.float32), hi, False, 8)
    # 0-d clips are one channel, in ulq_params as in the forward and backward
    zero_d = _core.ulq_params(np.array(-1.0, np.float32), np.array(1.0, np.float32), False, 8)
    one_d = _core.ulq_params(lo, hi, False, 8)
    assert all(np.array_equal(a, b) for a, b in zip(zero_d, one_d))
    grads = _core.ulq_backward(x, x, x.copy(), np.array(-1.0, np.float32), hi, None, False, 8)
    assert grads[0].shape == () and grads[1].shape == (1,)  # each in its clip's shape
    with pytest.raises(TypeError, match="^clip_min: expected a C-contiguous float32 array"):
        _core.ulq_params(np.float32(-1.0), hi, False, 8)


def test_regression_clip_beyond_float32_range() -> None:
    """Found by the fuzzer: a finite float64 clip that float32 cannot hold."""
    with pytest.raises(ValueError, match="^clip_max: expected values within float32's range"):
        qatcore.ulq_forward(np.zeros(3, np.float32), -1.0, 1e39)


def test_per_channel_clips_may_be_strided() -> None:
    """Clips are converted (C-contiguous float32) before _core checks their shape."""
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    lo, hi = np.float32([-1, 9, -2, 9, -3, 9])[::2], np.float32([1, 9, 2, 9, 3, 9])[::2]
    want = qatcore.ulq_forward(x, lo.copy(), hi.copy(), axis=0)
    got = qatcore.ulq_forward(x, lo, hi, axis=0)
    assert_same_floats(got.output, want.output)
    assert got.params == want.params and got.params.axis == 0
    assert qatcore.ulq_forward(x, lo, hi, axis=-2).params.axis == 0  # normalised, as before
