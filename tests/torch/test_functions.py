"""qatcore.torch's autograd functions: the kernels on CPU float32, the portable path
elsewhere, and the seam that chooses."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import assert_same_floats, require_module

torch = require_module("torch")

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
import reference as ref  # noqa: E402
from strategies import (  # noqa: E402
    f32,
    float_tensors,
    near_ties,
    num_bits,
    params_for,
    shapes,
    tie_weights,
    ulq_case,
    ulq_tie_case,
    ulq_weight_case,
)

# ---- autograd functions ------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("fixed_min", [False, True])
def test_ulq_function_on_cpu_float32_runs_the_kernels(axis, fixed_min) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 7, generator=g) * 2
    n = 1 if axis is None else x.shape[axis]
    shape = () if axis is None else (n,)
    cmin = (-torch.rand(shape, generator=g) - 0.5).requires_grad_()
    cmax = (torch.rand(shape, generator=g) + 0.5).requires_grad_()
    xg = x.clone().requires_grad_()
    grad = torch.randn(x.shape, generator=g)
    with kernel_calls() as calls:
        y = qt.ulq_fake_quant(xg, cmin, cmax, fixed_min=fixed_min, axis=axis)
        y.backward(grad)
    assert calls == {"ulq_forward": 1, "ulq_backward": 1}
    lo, hi = cmin.detach().numpy(), cmax.detach().numpy()
    want, _ = ref.ulq_forward(x.numpy(), lo, hi, fixed_min, 8, axis)
    gx, gmin, gmax = ref.ulq_backward_exact(grad.numpy(), x.numpy(), lo, hi, fixed_min, 8, axis)
    assert_same_floats(y.detach().numpy(), want)
    assert_same_floats(xg.grad.numpy(), gx)
    assert_same_floats(cmin.grad.numpy(), gmin)
    assert_same_floats(cmax.grad.numpy(), gmax)
    assert bool((cmax.grad != 0).all())
    # The portable path (what runs on CUDA) is tested on its own below.


def test_portable_path_runs_for_non_float32_tensors() -> None:
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    y = qt.ulq_fake_quant(
        x, torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    )
    y.sum().backward()
    expect, _ = ref.ulq_forward(x.detach().float().numpy(), -1.0, 1.0)
    assert torch.equal(y.detach().float(), torch.from_numpy(expect))


# ---- the portable path (PyTorch ops: CUDA and every non-float32 or non-CPU tensor) ----------
#
# Tested like the kernels: the same hypothesis cases against reference.py, every bit
# width, per tensor and per channel, NaN and inf, exact rounding ties. On CPU the
# float32 tensors that would go to the kernels are routed through the portable ops,
# exactly as CUDA tensors are, and the kernels are made to fail if called; with a GPU
# the same tests run on CUDA tensors as well.

PORTABLE_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _no_kernels(*args, **kwargs):
    raise AssertionError("the portable path called a qatcore kernel")


@contextmanager
def kernels_fail() -> Iterator[None]:
    """Every C++ kernel the adapter can call (``qatcore.kernels``) raises if called."""
    with pytest.MonkeyPatch.context() as mp:
        for name in qatcore.kernels.__all__:
            mp.setattr(qatcore.kernels, name, _no_kernels)
        yield


@contextmanager
def portable_path(device: str) -> Iterator[None]:
    """Autograd functions take the portable path for float32 tensors on ``device``, with
    the kernels made to fail if they are called."""
    with kernels_fail(), qt.force_portable():
        yield


@contextmanager
def kernel_calls() -> Iterator[dict[str, int]]:
    """Counts the calls of each C++ kernel the adapter calls (``qatcore.kernels``)."""
    calls: dict[str, int] = {}
    with pytest.MonkeyPatch.context() as mp:
        for name in qatcore.kernels.__all__:
            real = getattr(qatcore.kernels, name)

            def counted(*args, _real=real, _name=name, **kwargs):
                calls[_name] = calls.get(_name, 0) + 1
                return _real(*args, **kwargs)

            mp.setattr(qatcore.kernels, name, counted)
        yield calls


def on(device: str, a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).to(device)


def back(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def assert_clip_grads_within_sum_bound(got, want, terms, axis: int | None, label: str) -> None:
    """PyTorch sums the float64 terms in another order than NumPy, then rounds to float32.

    |got - want| <= 2**-24 |want| + 2**-149 (the float32 rounding, relative with a 1%
    margin, absolute among subnormals) plus twice the float64 bound of a sum of n terms in
    any order, (n - 1) 2**-53 sum|terms| (both sums carry it). In practice the results
    are mostly the same bits.
    """
    got = np.asarray(got, np.float64)
    others = None if axis is None else tuple(d for d in range(terms.ndim) if d != axis)
    n = terms.size if axis is None else terms.size // max(1, terms.shape[axis])
    abs_sum = np.sum(np.abs(terms), axis=others)
    bound = 1.01 * 2.0**-24 * np.abs(want) + 2.0**-149 + 2 * max(n - 1, 0) * 2.0**-53 * abs_sum
    assert got.shape == np.shape(want), (label, got.shape, np.shape(want))
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{label}: NaN positions differ"
    with np.errstate(invalid="ignore"):
        ok = np.isnan(want) | (np.abs(got - want) <= bound)
    assert ok.all(), f"{label}: {got[~ok]} != {np.asarray(want)[~ok]} (bound {bound[~ok]})"


with_specials = st.one_of(
    st.floats(width=32),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.floats(f32(-300), f32(300), width=32),
)


@pytest.mark.parametrize("device", PORTABLE_DEVICES)
@given(data=st.data(), bits=num_bits, power_of_two=st.booleans())
def test_portable_fake_quant_matches_reference(device, data, bits, power_of_two) -> None:
    """Bit for bit, NaN and inf included; with power-of-two scales, ties at every k + 1/2;
    with others, values within an ulp of (k + 1/2) * s, where dividing would differ."""
    e = data.draw(st.integers(-30, 30))
    ties = st.integers(-70000, 70000).map(lambda k: float((k + 0.5) * 2.0**e))
    elements = st.one_of(with_specials, ties) if power_of_two else with_specials
    x = data.draw(float_tensors(elements=elements))
    scale, zp, axis = data.draw(params_for(x, bits, power_of_two=power_of_two))
    if power_of_two:
        scale = np.full(np.shape(zp), 2.0**e, np.float32)
    elif data.draw(st.booleans()):
        x, scale, zp = data.draw(near_ties(x.shape, axis, bits))
    _, want = ref.fake_quant(x, scale, zp, bits, axis)
    got = qt._portable.fake_quant(on(device, x), on(device, scale), on(device, zp), bits, axis)
    assert_same_floats(back(got), want, device)


@pytest.mark.parametrize("device", PORTABLE_DEVICES)
@given(case=st.one_of(ulq_case(allow_nan=True), ulq_tie_case()))
def test_portable_ulq_forward_and_backward_match_reference(device, case) -> None:
    """ulq_fake_quant forward and backward on the portable path: the output and
    grad_input bit for bit, the clip gradients within the float64 summation bound."""
    x, g, cmin, cmax, fixed_min, bits, axis = case
    want_y, _ = ref.ulq_forward(x, cmin, cmax, fixed_min, bits, axis)
    want_gx, min_terms, max_terms = ref.ulq_backward_terms(g, x, cmin, cmax, fixed_min, bits, axis)
    _, want_gmin, want_gmax = ref.ulq_backward(g, x, cmin, cmax, fixed_min, bits, axis)
    xt = on(device, x).requires_grad_()
    lo, hi = on(device, cmin).requires_grad_(), on(device, cmax).requires_grad_()
    with portable_path(device):
        y = qt.ulq_fake_quant(xt, lo, hi, fixed_min=fixed_min, num_bits=bits, axis=axis)
        y.backward(on(device, g))
    assert_same_floats(back(y), want_y, f"{device} output")
    assert_same_floats(back(xt.grad), want_gx, f"{device} grad_input")
    assert lo.grad.shape == lo.shape and hi.grad.dtype == torch.float32
    assert_clip_grads_within_sum_bound(back(hi.grad), want_gmax, max_terms, axis, "grad_clip_max")
    assert_clip_grads_within_sum_bound(back(lo.grad), want_gmin, min_terms, axis, "grad_clip_min")
    if fixed_min:
        assert not back(lo.grad).any()


@pytest.mark.parametrize("device", PORTABLE_DEVICES)
@given(data=st.data(), bits=num_bits, channel_wise=st.booleans())
def test_portable_arq_matches_reference(device, data, bits, channel_wise) -> None:
    """arq_fake_quant on the portable path: the output bit for bit (ties included), the
    backward straight through. Finite, non-empty weights: the kernels raise ValueError
    on NaN or inf weights, the portable path does not check (it would cost a sync)."""
    if data.draw(st.booleans()):
        w, bits = data.draw(tie_weights())
    else:
        w = data.draw(float_tensors(shape=shapes.map(lambda s: tuple(max(d, 1) for d in s))))
    if w.ndim == 0:
        channel_wise = False
    axis = data.draw(st.integers(0, w.ndim - 1)) if channel_wise else 0
    want, _ = ref.arq(w, channel_wise, axis, bits)
    wt = on(device, w).requires_grad_()
    g = on(device, np.linspace(-1, 1, w.size, dtype=np.float32).reshape(w.shape))
    with portable_path(device):
        y = qt.arq_fake_quant(wt, channel_wise=channel_wise, axis=axis, num_bits=bits)
        y.backward(g)
    assert_same_floats(back(y), want, device)
    assert_same_floats(back(wt.grad), back(g), f"{device} straight-through")


@pytest.mark.parametrize("device", PORTABLE_DEVICES)
@given(case=ulq_weight_case(allow_nan=True))
def test_portable_ulq_weight_matches_reference(device, case) -> None:
    """ulq_weight_fake_quant on the portable path: the output bit for bit, the weight
    gradient straight through, the scale gradient within the float64 summation bound."""
    w, g, scale, bits, axis = case
    want_y = ref.ulq_weight_forward(w, scale, bits, axis)
    _, terms = ref.ulq_weight_backward_terms(g, w, scale, bits, axis)
    _, want_gs = ref.ulq_weight_backward(g, w, scale, bits, axis)
    n = w.size if axis is None else w.size // max(1, w.shape[axis])
    wt, st_ = on(device, w).requires_grad_(), on(device, scale).requires_grad_()
    with portable_path(device):
        y = qt.ulq_weight_fake_quant(wt, st_, num_bits=bits, axis=axis)
        y.backward(on(device, g))
    assert_same_floats(back(y), want_y, f"{device} output")
    assert_same_floats(back(wt.grad), g, f"{device} grad_weight")
    assert st_.grad.shape == st_.shape and st_.grad.dtype == torch.float32
    norm = math.sqrt(n * ref.qrange(bits)[1]) if n else 1.0
    assert_clip_grads_within_sum_bound(
        back(st_.grad), want_gs, terms / norm, axis, f"{device} grad_scale"
    )


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_ulq_weight_function_on_cpu_float32_runs_the_kernels(axis) -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 5, 3, generator=g) * 0.1
    shape = () if axis is None else (w.shape[axis],)
    scale = (torch.rand(shape, generator=g) * 1e-3 + 5e-4).requires_grad_()
    wg = w.clone().requires_grad_()
    grad = torch.randn(w.shape, generator=g)
    with kernel_calls() as calls:
        y = qt.ulq_weight_fake_quant(wg, scale, axis=axis)
        y.backward(grad)
    assert calls == {"ulq_weight_forward": 1, "ulq_weight_backward": 1}
    s = scale.detach().numpy()
    _, want_gs = ref.ulq_weight_backward_exact(grad.numpy(), w.numpy(), s, 8, axis)
    assert_same_floats(y.detach().numpy(), ref.ulq_weight_forward(w.numpy(), s, 8, axis))
    assert_same_floats(wg.grad.numpy(), grad.numpy())
    assert_same_floats(scale.grad.numpy(), want_gs)
    assert bool((scale.grad != 0).all())


@pytest.mark.parametrize("channel_wise", [True, False])
def test_arq_function_is_straight_through(channel_wise: bool) -> None:
    w = torch.randn(8, 3, 3, 3, requires_grad=True)
    y = qt.arq_fake_quant(w, channel_wise=channel_wise)
    assert_same_floats(y.detach().numpy(), ref.arq(w.detach().numpy(), channel_wise)[0])
    g = torch.randn(w.shape)
    y.backward(g)
    assert torch.equal(w.grad, g)
    s = qt._portable.arq_scale(w.detach(), channel_wise, 0, 8)
    portable = qt._portable.fake_quant(
        w.detach(), s, torch.zeros_like(s), 8, 0 if channel_wise else None
    )
    assert torch.equal(portable, y.detach())


def test_kernels_take_tensor_memory_without_copies() -> None:
    x = torch.randn(64, 64)
    out = torch.empty_like(x)
    r = qatcore.ulq_forward(x.numpy(), -1.0, 1.0, out=out.numpy())
    assert r.output.ctypes.data == out.data_ptr()


# ---- which implementation runs (the device seam) ---------------------------------------------


def _all_functions(device: str = "cpu") -> torch.Tensor:
    """ARQ, ULQ and weight ULQ forward and backward on float32 tensors; the summed output."""
    g = torch.Generator().manual_seed(11)
    x = (torch.randn(4, 6, generator=g) * 2).to(device).requires_grad_()
    w = (torch.randn(3, 6, generator=g) * 0.1).to(device).requires_grad_()
    lo = torch.tensor(-1.0, device=device, requires_grad=True)
    hi = torch.tensor(1.5, device=device, requires_grad=True)
    scale = torch.full((3,), 2e-3, device=device, requires_grad=True)
    a = qt.ulq_fake_quant(x, lo, hi)
    b = qt.ulq_weight_fake_quant(w, scale, axis=0)
    c = qt.arq_fake_quant(w)
    out = (a @ b.T).sum() + (a @ c.T).sum()
    out.backward()
    return out.detach()


ALL_KERNELS = {
    "ulq_forward": 1,
    "ulq_backward": 1,
    "ulq_weight_forward": 1,
    "ulq_weight_backward": 1,
    "arq": 1,
}


def test_cpu_float32_tensors_run_the_kernels_by_default() -> None:
    with kernel_calls() as calls:
        _all_functions()
    assert calls == ALL_KERNELS


def test_the_kernel_guard_trips_when_a_kernel_is_called() -> None:
    """kernels_fail(), which the portable tests run under, catches a kernel call: without
    force_portable() the CPU float32 tensors reach the kernels and it fires."""
    with kernels_fail(), pytest.raises(AssertionError, match="called a qatcore kernel"):
        _all_functions()


def test_force_portable_keeps_cpu_tensors_off_the_kernels() -> None:
    """Inside force_portable() no kernel is called (forward or backward), and the result
    is the kernels' result; the setting ends with the block."""
    want = _all_functions()
    with kernel_calls() as calls:
        with qt.force_portable():
            y = qt.ulq_fake_quant(torch.randn(5, 3), torch.tensor(-1.0), torch.tensor(1.0))
        assert calls == {}
        with kernels_fail(), qt.force_portable():
            got = _all_functions()
        assert calls == {}
        _all_functions()
        assert calls == ALL_KERNELS  # outside the block: the kernels again
    assert torch.equal(got, want)
    # A forward run inside the block takes the portable backward, even when the backward
    # runs after it.
    x = torch.randn(5, 3, requires_grad=True)
    with qt.force_portable():
        y = qt.ulq_fake_quant(x, torch.tensor(-1.0), torch.tensor(1.0))
    with kernels_fail():
        y.sum().backward()


def test_mixed_devices_or_dtypes_take_the_portable_path() -> None:
    x = torch.randn(4, 6)
    with kernels_fail():
        y = qt.ulq_fake_quant(x, torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0))
    want, _ = ref.ulq_forward(x.numpy(), -1.0, 1.0)
    assert_same_floats(y.numpy(), want)
