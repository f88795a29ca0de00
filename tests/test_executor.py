"""The executor seam (csrc/exec/): every kernel family gives the same bits on the serial
executor (one thread, as a front end's own executor may be) as on the default one (two
threads from each pool, at a tiny grain so that calls really split), and those bits are
tests/reference.py's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import pytest

import qatcore
import reference as ref
from helpers import POOLS, SMALL_GRAIN, assert_same_floats, backend
from qatcore import _core

T = TypeVar("T")


@contextmanager
def on_executor(name: str, pool: str) -> Iterator[None]:
    old = _core.get_executor()
    with backend(qatcore.get_isa(), 2, SMALL_GRAIN, pool):
        _core.set_executor(name)
        try:
            yield
        finally:
            _core.set_executor(old)


def on_each_executor(fn: Callable[[], T]) -> list[tuple[str, T]]:
    """(label, fn()) on the serial executor and on the default one with each pool; proves
    which ran: the serial one never leaves the calling thread, qatcore's pool does."""
    results = []
    for name, pool in [("serial", POOLS[0]), *(("default", p) for p in POOLS)]:
        with on_executor(name, pool):
            before = _core.parallel_jobs()
            result = fn()
            parallel = _core.parallel_jobs() > before
        if name == "serial":
            assert not parallel, "the serial executor ran a call on several threads"
        elif pool == "qatcore":
            assert parallel, "the default executor kept a call of many chunks on one thread"
        results.append((f"{name} ({pool})", result))
    return results


RNG = np.random.default_rng(21)
X = (RNG.standard_normal((6, 5, 37)) * 3).astype(np.float32)  # channels along axis 1
G = RNG.standard_normal(X.shape).astype(np.float32)
XT = np.ascontiguousarray(X.transpose(0, 2, 1))  # channels along the last axis
GT = np.ascontiguousarray(G.transpose(0, 2, 1))


@pytest.mark.parametrize(("x", "axis"), [(X, 1), (XT, 2), (X, None)])
def test_elementwise(x: np.ndarray, axis: int | None) -> None:
    channels = 1 if axis is None else x.shape[axis]
    shape = () if axis is None else (channels,)
    scale = np.linspace(0.02, 0.05, channels, dtype=np.float32).reshape(shape)
    zp = np.arange(channels, dtype=np.int32).reshape(shape) - 2
    q_ref, y_ref = ref.fake_quant(x, scale, zp, 8, axis)
    s1, z1 = scale.reshape(-1), zp.reshape(-1)

    def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, q, back = np.empty_like(x), np.empty(x.shape, np.int8), np.empty_like(x)
        _core.fake_quantize(x, y, s1, z1, axis, 8)
        _core.quantize(x, q, s1, z1, axis, 8)
        _core.dequantize(q, back, s1, z1, axis, 8)
        return y, q, back

    for label, (y, q, back) in on_each_executor(run):
        assert_same_floats(y, y_ref, label)
        assert np.array_equal(q, q_ref.astype(np.int8)), label
        assert_same_floats(back, y_ref, label)


@pytest.mark.parametrize(("x", "g", "axis"), [(X, G, 1), (XT, GT, 2), (X, G, None)])
def test_ulq_forward_and_backward(x: np.ndarray, g: np.ndarray, axis: int | None) -> None:
    channels = 1 if axis is None else x.shape[axis]
    lo = np.linspace(-2.0, -0.5, channels, dtype=np.float32)
    hi = np.linspace(0.5, 3.0, channels, dtype=np.float32)
    scale = np.linspace(0.01, 0.04, channels, dtype=np.float32)
    y_ref, _ = ref.ulq_forward(x, lo, hi, axis=axis)
    gx_ref, gmin_ref, gmax_ref = ref.ulq_backward_exact(g, x, lo, hi, axis=axis)
    gw_ref, gs_ref = ref.ulq_weight_backward_exact(g, x, scale, axis=axis)
    wy_ref = ref.ulq_weight_forward(x, scale, axis=axis)

    def run() -> tuple[np.ndarray, ...]:
        y, gx, wy, gw = (np.empty_like(x) for _ in range(4))
        _core.ulq_forward(x, y, lo, hi, axis, False, 8)
        gmin, gmax = _core.ulq_backward(g, x, gx, lo, hi, axis, False, 8)
        _core.ulq_weight_forward(x, wy, scale, axis, 8)
        gs = _core.ulq_weight_backward(g, x, gw, scale, axis, 8)
        return y, gx, gmin, gmax, wy, gw, gs

    for label, (y, gx, gmin, gmax, wy, gw, gs) in on_each_executor(run):
        assert_same_floats(y, y_ref, label)
        assert_same_floats(gx, gx_ref, label)
        assert_same_floats(gmin, np.reshape(gmin_ref, -1), label)
        assert_same_floats(gmax, np.reshape(gmax_ref, -1), label)
        assert_same_floats(wy, wy_ref, label)
        assert_same_floats(gw, gw_ref, label)
        assert_same_floats(gs, np.reshape(gs_ref, -1), label)


@pytest.mark.parametrize(("w", "axis"), [(X.reshape(6, -1), 0), (X, 1), (X, None)])
def test_arq(w: np.ndarray, axis: int | None) -> None:
    want_y, want_s = ref.arq(w, channel_wise=axis is not None, axis=axis or 0)

    def run() -> tuple[np.ndarray, np.ndarray]:
        y = np.empty_like(w)
        return y, _core.arq(w, y, axis, 8)

    for label, (y, s) in on_each_executor(run):
        assert_same_floats(y, want_y, label)
        assert_same_floats(s, np.reshape(want_s, -1), label)


def test_reduce() -> None:
    x = np.ascontiguousarray(X.reshape(-1) / np.float32(2))  # inside [-4, 4)
    x = np.clip(x, np.float32(-4), np.float32(3.99))
    want = np.bincount((np.floor(x.astype(np.float64) * 8) + 32).astype(np.int64), minlength=64)

    def run() -> tuple[tuple[float, float, bool], np.ndarray]:
        counts = np.zeros(64, np.int64)
        _core.histogram_add(x, counts, 8.0, -32.0)
        return _core.minmax(x), counts

    for label, (mm, counts) in on_each_executor(run):
        assert mm == (float(x.min()), float(x.max()), True), label
        assert np.array_equal(counts, want), label


def test_ifmr() -> None:
    x = X.reshape(-1)
    scales = np.linspace(0.01, 0.05, 7, dtype=np.float32)
    zps = np.zeros(7, np.int32)
    edges = np.linspace(-4.0, 4.0, 65)
    count = RNG.integers(0, 50, 64).astype(np.float64)
    want_data = [
        float(np.sum((ref.fake_quant(x, s, 0, 8)[1].astype(np.float64) - x) ** 2)) for s in scales
    ]
    want_hist = [
        ref.hist_sq_error(edges[:-1], edges[1:], count, s, 0, 8) for s in scales.astype(np.float64)
    ]

    def run() -> tuple[np.ndarray, np.ndarray]:
        return (
            _core.data_sq_errors(x, scales, zps, 8),
            _core.hist_sq_errors(edges[:-1], edges[1:], count, scales, zps, 8),
        )

    results = on_each_executor(run)
    for label, (data, hist) in results:
        assert np.array_equal(data, results[0][1][0]), label  # the same bits on every executor
        assert np.array_equal(hist, results[0][1][1]), label
        np.testing.assert_allclose(data, want_data, rtol=1e-12, err_msg=label)
        np.testing.assert_allclose(hist, want_hist, rtol=1e-10, err_msg=label)


def test_set_executor_validates() -> None:
    with pytest.raises(ValueError, match="^name: expected 'default' or 'serial', got 'xla'"):
        _core.set_executor("xla")
    assert _core.get_executor() == "default"
