"""Weight ULQ (SPEC "Weight ULQ"): the learnable symmetric scale, forward and backward,
against the reference, ARQ, PyTorch's fake quantization and a PyTorch autograd
implementation of the same formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import qatcore
import reference as ref
from helpers import (
    assert_clip_grads_close,
    assert_same_floats,
    on_every_backend,
    order_sensitive,
    require_torch,
)
from strategies import float_tensors, shapes, ulq_weight_case

weight_cases = ulq_weight_case(allow_nan=True)


@given(case=weight_cases)
def test_weight_forward_matches_reference(case) -> None:
    w, _, scale, bits, axis = case
    want = ref.ulq_weight_forward(w, scale, bits, axis)
    for label, r in on_every_backend(
        lambda: qatcore.ulq_weight_forward(w, scale, num_bits=bits, axis=axis)
    ):
        assert_same_floats(r.output, want, label)
        assert_same_floats(r.params.scale, scale, label)
        assert not r.params.zero_point.any() and r.params.zero_point.shape == np.shape(scale)
        assert r.params.axis == axis and r.params.num_bits == bits


@given(data=float_tensors(shape=shapes.filter(lambda s: 0 not in s)), bits=st.integers(2, 16))
def test_weight_forward_is_arq_for_the_arq_scale(data, bits) -> None:
    """With the ARQ scale (the scale ULQ starts from), the output is ARQ's, bit for bit."""
    for axis in [None, *range(data.ndim)]:
        channel_wise = axis is not None
        arq = qatcore.arq(data, channel_wise=channel_wise, axis=axis or 0, num_bits=bits)
        got = qatcore.ulq_weight_forward(data, arq.params.scale, num_bits=bits, axis=axis)
        assert_same_floats(got.output, arq.output, f"axis={axis}")
        assert got.params == arq.params


@given(case=weight_cases)
def test_weight_backward_matches_reference(case) -> None:
    w, g, scale, bits, axis = case
    gw_ref, gs_ref = ref.ulq_weight_backward(g, w, scale, bits, axis)
    _, exact = ref.ulq_weight_backward_exact(g, w, scale, bits, axis)
    results = list(
        on_every_backend(lambda: qatcore.ulq_weight_backward(g, w, scale, num_bits=bits, axis=axis))
    )
    for label, r in results:
        assert_same_floats(r.grad_weight, gw_ref, label)  # straight-through, unmasked
        assert r.grad_scale.shape == np.shape(scale) and r.grad_scale.dtype == np.float32
        assert_clip_grads_close(r.grad_scale, gs_ref, f"{label} grad_scale")
        # SPEC "Summation order": the same bits at every ISA level and thread count.
        assert_same_floats(r.grad_scale, exact, label)


def test_weight_backward_known_values() -> None:
    """Ties round half to even; below and above the range d is qmin and qmax."""
    s = np.float32(0.25)
    #        t = 0.5   1.5   2.5   -0.5   -2.5   inside   qmax*s  beyond  below
    w = np.float32([0.125, 0.375, 0.625, -0.125, -0.625, 0.3, 31.75, 40.0, -33.0])
    d = [-0.5, 0.5, -0.5, 0.5, 0.5, 1 - np.float32(0.3) * 4, 0.0, 127, -128]
    g = np.float32([1, 2, 3, 4, 5, 6, 7, 8, 9])
    r = qatcore.ulq_weight_backward(g, w, s)
    want = sum(float(a) * float(b) for a, b in zip(g, d)) / math.sqrt(w.size * 127)
    assert float(r.grad_scale) == pytest.approx(want, rel=1e-7)
    assert_same_floats(r.grad_weight, g)
    y = qatcore.ulq_weight_forward(w, s).output
    assert y.tolist() == [0.0, 0.5, 0.5, -0.0, -0.5, 0.25, 31.75, 31.75, -32.0]
    # Per channel: N is each channel's element count; a channel of no elements gets 0.
    w2 = np.float32([[0.125, 40.0], [-33.0, 0.375]])
    r2 = qatcore.ulq_weight_backward(np.ones_like(w2), w2, np.float32([0.25, 0.25]), axis=0)
    assert r2.grad_scale.tolist() == pytest.approx(
        [(-0.5 + 127) / math.sqrt(2 * 127), (-128 + 0.5) / math.sqrt(2 * 127)], rel=1e-7
    )
    empty = qatcore.ulq_weight_backward(
        np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), np.float32([1, 1, 1]), axis=1
    )
    assert empty.grad_scale.tolist() == [0.0, 0.0, 0.0]


def test_nan_poisons_the_scale_gradient() -> None:
    w = np.float32([0.5, np.nan, -3.0, np.inf])
    r = qatcore.ulq_weight_backward(np.ones(4, np.float32), w, 0.01)
    assert np.isnan(r.grad_scale) and r.grad_weight.tolist() == [1.0] * 4
    fine = qatcore.ulq_weight_backward(
        np.ones(3, np.float32), np.float32([0.0, -np.inf, np.inf]), 0.01
    )
    assert float(fine.grad_scale) == pytest.approx((0.0 - 128 + 127) / math.sqrt(3 * 127))


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((64, 256, 7, 7), None),  # long rows, per tensor
        ((256, 64, 3, 3), 0),  # short rows grouped into pieces
        ((8, 64, 30, 30), 1),
        ((4096, 96), 1),  # channels along the last axis
        ((3, 50_000), 0),  # rows longer than a piece
        ((2, 2**14 - 1), 0),  # one piece, on each side of its size
        ((2, 2**14 + 1), 0),
        ((47,), None),  # vector steps of 16 and 8, and the rest
    ],
)
def test_weight_sums_follow_the_spec_order(shape: tuple[int, ...], axis: int | None) -> None:
    """The scale gradient equals, to the bit, the SPEC's sum taken in "Summation order",
    at every ISA level and thread count with the real chunking, on inputs whose float32
    result changes when any two additions change places."""
    rng = np.random.default_rng(9)
    w, g = order_sensitive(shape, axis, rng)
    n = 1 if axis is None else shape[axis]
    scale = rng.uniform(0.5e-3, 1.5e-3, n).astype(np.float32)
    if axis is None:
        scale = scale.reshape(())
    _, gs_ref = ref.ulq_weight_backward_exact(g, w, scale, 8, axis)
    for label, r in on_every_backend(
        lambda: qatcore.ulq_weight_backward(g, w, scale, axis=axis, out=np.empty_like(w)),
        grain=None,
    ):
        assert_same_floats(r.grad_weight, g, label)
        assert_same_floats(r.grad_scale, gs_ref, label)


def test_out_buffers_and_aliasing() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 33)).astype(np.float32)
    g = rng.standard_normal((5, 33)).astype(np.float32)
    s = np.float32(0.01)
    fresh = qatcore.ulq_weight_backward(g, w, s)
    assert fresh.grad_weight is not g and not np.shares_memory(fresh.grad_weight, g)
    assert_same_floats(fresh.grad_weight, g)
    g2 = g.copy()
    same = qatcore.ulq_weight_backward(g2, w, s, out=g2)  # grad_weight is grad_output itself
    assert same.grad_weight is g2 and same.grad_scale == fresh.grad_scale
    assert_same_floats(g2, g)
    w2 = w.copy()
    assert qatcore.ulq_weight_backward(g, w2, s, out=w2).grad_scale == fresh.grad_scale
    assert_same_floats(w2, g)
    out = np.empty_like(w)
    y = qatcore.ulq_weight_forward(w, s, out=out)
    assert y.output is out
    w3 = w.copy()
    assert_same_floats(qatcore.ulq_weight_forward(w3, s, out=w3).output, out)
    assert_same_floats(qatcore.ulq_weight_forward(np.asfortranarray(w), s).output, out)


def test_bad_input_names_the_argument() -> None:
    w = np.zeros((3, 4), np.float32)
    for bad in (0.0, -1.0, np.nan, np.inf, 1e-39):
        with pytest.raises(ValueError, match="^scale: expected finite positive values"):
            qatcore.ulq_weight_forward(w, bad)
        with pytest.raises(ValueError, match="^scale: expected finite positive values"):
            qatcore.ulq_weight_backward(w, w, np.float32([1, 1, bad]), axis=0)
    with pytest.raises(ValueError, match="^scale: expected a 1-d array of length 4"):
        qatcore.ulq_weight_forward(w, np.float32([1, 1, 1]), axis=1)
    with pytest.raises(ValueError, match="^scale: expected a scalar per tensor"):
        qatcore.ulq_weight_forward(w, np.float32([1, 1]))
    with pytest.raises(ValueError, match="^scale: expected values within float32's range"):
        qatcore.ulq_weight_forward(w, 1e39)
    with pytest.raises(TypeError, match="^scale: expected a real number"):
        qatcore.ulq_weight_forward(w, "one")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^w: expected a real floating-point array"):
        qatcore.ulq_weight_forward(np.zeros(3, np.int32), 1.0)
    with pytest.raises(ValueError, match=r"^grad_output: expected the shape of w \(3, 4\)"):
        qatcore.ulq_weight_backward(np.zeros((4, 3), np.float32), w, 1.0)
    with pytest.raises(ValueError, match=r"^axis: expected an integer in \[-2, 2\)"):
        qatcore.ulq_weight_forward(w, np.float32([1]), axis=2)
    with pytest.raises(ValueError, match=r"^num_bits: expected an integer in \[2, 16\]"):
        qatcore.ulq_weight_backward(w, w, 1.0, num_bits=17)
    with pytest.raises(TypeError, match="^num_bits: expected an int"):
        qatcore.ulq_weight_forward(w, 1.0, num_bits=8.0)  # type: ignore[arg-type]
    from qatcore import _core

    with pytest.raises(ValueError, match="^out: expected either grad_output itself"):
        buf = np.zeros(5, np.float32)
        _core.ulq_weight_backward(
            buf[:4], np.zeros(4, np.float32), buf[1:], np.float32([1]), None, 8
        )


# ---- PyTorch -----------------------------------------------------------------------------


def autograd_weight_ulq(torch, w, scale, g, bits: int, axis: int | None):
    """The SPEC's formulas as a PyTorch autograd graph, in float64: the forward value is
    the fake quantization, and autograd derives the gradients from it. d (rint(t) - t
    inside, qmin / qmax outside, from the float32 t = w * (1/s)) is a constant; the
    output's dependence on the scale is s * k * d with k = 1/sqrt(N * qmax) applied to the
    gradient only, and on the weights the identity (straight-through, unmasked)."""
    qmin, qmax = ref.qrange(bits)
    w32 = torch.from_numpy(w.copy())
    s32 = torch.from_numpy(np.asarray(scale, np.float32).reshape(-1).copy())
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    sb = s32.reshape(shape) if axis is not None else s32.reshape(())
    t = w32 * (1.0 / sb)
    d = torch.where(w32 > qmax * sb, qmax, torch.where(w32 < qmin * sb, qmin, torch.round(t) - t))
    y_value = torch.clamp(torch.round(t), qmin, qmax) * sb  # the fake quantization
    n = w.size if axis is None else w.size // max(1, w.shape[axis])
    k = 1.0 / math.sqrt(n * qmax) if n else 0.0
    wt = w32.double().requires_grad_()
    st_ = s32.double().requires_grad_()
    s_b = st_.reshape(shape) if axis is not None else st_.reshape(())
    y = y_value.double() + (wt - wt.detach()) + (s_b - s_b.detach()) * k * d.double()
    y.backward(torch.from_numpy(g.copy()).double())
    return y.detach(), wt.grad, st_.grad.reshape(np.shape(scale))


@given(case=ulq_weight_case())
def test_kernels_agree_with_pytorch_autograd_of_the_formulas(case) -> None:
    torch = require_torch()
    w, g, scale, bits, axis = case
    assume(axis is None or w.shape[axis] > 0)
    y, gw, gs = autograd_weight_ulq(torch, w, scale, g, bits, axis)
    fwd = qatcore.ulq_weight_forward(w, scale, num_bits=bits, axis=axis)
    back = qatcore.ulq_weight_backward(g, w, scale, num_bits=bits, axis=axis)
    assert_same_floats(fwd.output, y.float().numpy())
    assert_same_floats(back.grad_weight, gw.float().numpy())
    assert_clip_grads_close(back.grad_scale, gs.numpy(), "grad_scale")


@given(case=ulq_weight_case())
def test_forward_bit_identical_to_torch_fake_quantize(case) -> None:
    torch = require_torch()
    w, _, scale, bits, axis = case
    assume(axis is None or w.shape[axis] > 0)
    # PyTorch converts rint(x / s) to int64 before clamping (see the fake_quant tests).
    assume(w.size == 0 or np.abs(w).max() / np.float64(np.min(scale)) < 2.0**62)
    qmin, qmax = ref.qrange(bits)
    wt = torch.from_numpy(w.copy())
    if axis is None:
        want = torch.fake_quantize_per_tensor_affine(wt, float(scale), 0, qmin, qmax)
    else:
        zeros = torch.zeros(len(scale), dtype=torch.int32)
        want = torch.fake_quantize_per_channel_affine(
            wt, torch.from_numpy(scale.copy()), zeros, axis, qmin, qmax
        )
    got = qatcore.ulq_weight_forward(w, scale, num_bits=bits, axis=axis).output
    assert_same_floats(got, want.numpy())
