"""Threads: each family's grain (the size below which a call stays on one thread), the
two sources of threads (qatcore's pool, the process's OpenMP team), and results that
are the same bits on either side of every threshold."""

from __future__ import annotations

import os

import numpy as np
import pytest

import qatcore
import reference as ref
from helpers import (
    POOLS,
    assert_same_floats,
    backend,
    child_exit_code,
    on_every_backend,
    require_torch,
)
from qatcore import _core, kernels

GRAINS = _core.grains()
FAMILIES = ["elementwise", "ulq_backward", "arq", "reduce", "ifmr"]
WAKE_CHUNKS = _core.wake_chunks()  # jobs this long wake the pool's sleeping workers


def sizes_around(family: str) -> list[int]:
    """Sizes on each side of where a call leaves one thread (two grains), and of where
    it wakes sleeping workers."""
    g = GRAINS[family]
    return [2 * g - 1, 2 * g, 2 * g + 1, WAKE_CHUNKS * g - 1, WAKE_CHUNKS * g + 3]


def test_every_family_has_a_measured_grain() -> None:
    """The grains of csrc/ops/layout.h are measured by `python bench/bench.py --only threads`
    (its "serial below" rows, rounded to a power of two); rerun that case when one changes."""
    assert sorted(GRAINS) == sorted(FAMILIES)
    for family, g in GRAINS.items():
        assert g >= 1 and g & (g - 1) == 0, (family, g)  # a power of two, as measured


def rng_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 2).astype(np.float32), rng.standard_normal(n).astype(
        np.float32
    )


@pytest.mark.parametrize("n", sizes_around("elementwise"))
def test_elementwise_around_its_grain(n: int) -> None:
    x, _ = rng_arrays(n)
    want, _ = ref.ulq_forward(x, -1.5, 2.5)
    for label, r in on_every_backend(lambda: qatcore.ulq_forward(x, -1.5, 2.5), grain=None):
        assert_same_floats(r.output, want, label)


@pytest.mark.parametrize("n", sizes_around("ulq_backward"))
def test_ulq_backward_around_its_grain(n: int) -> None:
    x, g = rng_arrays(n, 1)
    gx, gmin, gmax = ref.ulq_backward_exact(g, x, np.float32(-1.5), np.float32(2.5))
    w_ref = ref.ulq_weight_backward_exact(g, x, np.float32(0.01))[1]
    for label, r in on_every_backend(lambda: qatcore.ulq_backward(g, x, -1.5, 2.5), grain=None):
        assert_same_floats(r.grad_input, gx, label)
        assert_same_floats(r.grad_clip_min, gmin, label)
        assert_same_floats(r.grad_clip_max, gmax, label)
    for label, w in on_every_backend(lambda: qatcore.ulq_weight_backward(g, x, 0.01), grain=None):
        assert_same_floats(w.grad_scale, w_ref, label)


@pytest.mark.parametrize("n", sizes_around("arq"))
def test_arq_around_its_grain(n: int) -> None:
    x, _ = rng_arrays(n, 2)
    rows = x[: n - n % 16].reshape(16, -1)  # the fused per-row path
    want_rows = ref.arq(rows)[0]
    want_tensor = ref.arq(x, channel_wise=False)[0]  # min/max over parts, then elementwise
    for label, r in on_every_backend(lambda: qatcore.arq(rows), grain=None):
        assert_same_floats(r.output, want_rows, label)
    for label, r in on_every_backend(lambda: qatcore.arq(x, channel_wise=False), grain=None):
        assert_same_floats(r.output, want_tensor, label)


@pytest.mark.parametrize("n", sizes_around("reduce"))
def test_reduce_around_its_grain(n: int) -> None:
    x, _ = rng_arrays(n, 3)
    counts = [
        h.counts for _, h in on_every_backend(lambda: qatcore.Histogram().observe(x), grain=None)
    ]
    first = counts[0]
    assert first.sum() == n
    for c in counts[1:]:
        assert np.array_equal(c, first)
    for label, mm in on_every_backend(lambda: _core.minmax(x), grain=None):
        assert mm == (float(x.min()), float(x.max()), True), label


@pytest.mark.parametrize("candidates", [1, 2, 3, 2 * WAKE_CHUNKS + 1])
def test_ifmr_search_around_its_grain(candidates: int) -> None:
    """Each candidate's loss is one thread's sum: the same bits however they are shared."""
    bins = GRAINS["ifmr"]  # candidates x bins pairs: one grain per candidate
    edges = np.linspace(-4.0, 4.0, bins + 1)
    count = np.random.default_rng(4).integers(0, 50, bins).astype(np.float64)
    scales = np.linspace(0.01, 0.05, candidates, dtype=np.float32)
    zps = np.zeros(candidates, np.int32)
    want = [
        ref.hist_sq_error(edges[:-1], edges[1:], count, s, 0, 8) for s in scales.astype(np.float64)
    ]
    results = [
        (label, r)
        for label, r in on_every_backend(
            lambda: _core.hist_sq_errors(edges[:-1], edges[1:], count, scales, zps, 8), grain=None
        )
    ]
    for label, r in results:
        assert np.array_equal(r, results[0][1]), label
        np.testing.assert_allclose(r, want, rtol=1e-10, err_msg=label)


@pytest.mark.parametrize("pool", POOLS)
def test_calls_below_two_grains_stay_on_one_thread(pool: str) -> None:
    """A call of fewer than two grains never leaves the calling thread; one of several
    grains always does (also when the pool's workers sleep)."""
    g = GRAINS["elementwise"]
    for n, parallel in [(2 * g - 1, False), (2 * WAKE_CHUNKS * g, True)]:
        x, _ = rng_arrays(n)
        out = np.empty_like(x)
        lo, hi = np.float32([-1.0]), np.float32([1.0])
        with backend(qatcore.get_isa(), 2, grain=None, pool=pool):
            before = _core.parallel_jobs()
            kernels.ulq_forward(x, out, lo, hi, None, False, 8)
            assert (_core.parallel_jobs() > before) == parallel, (pool, n)


def test_kernels_run_on_pytorchs_openmp_threads() -> None:
    """With PyTorch loaded, parallel calls run on its OpenMP team, capped by its thread
    setting: with torch.set_num_threads(1) a large call stays on the calling thread."""
    torch = require_torch()
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    if not os.path.exists(os.path.join(lib, "libgomp.so.1")) and not _core.openmp_threads():
        pytest.skip("this PyTorch build brings no libgomp")
    assert _core.openmp_threads()
    assert qatcore.backend_info()["threads_from"] == "openmp"
    x, _ = rng_arrays(1 << 20)
    out = np.empty_like(x)
    lo, hi = np.float32([-1.0]), np.float32([1.0])
    old = torch.get_num_threads()
    try:
        with qatcore.use_backend(num_threads=2):
            for torch_threads, parallel in [(1, False), (2, True)]:
                torch.set_num_threads(torch_threads)
                before = _core.parallel_jobs()
                kernels.ulq_forward(x, out, lo, hi, None, False, 8)
                assert (_core.parallel_jobs() > before) == parallel, torch_threads
    finally:
        torch.set_num_threads(old)


def test_forked_child_of_a_pytorch_process_does_not_hang() -> None:
    """libgomp's team does not survive fork(): the child runs on qatcore's pool."""
    require_torch()
    parent = (
        "import numpy as np, torch, qatcore\n"
        "from qatcore import _core\n"
        "torch.set_num_threads(2); qatcore.set_num_threads(2)\n"
        "torch.ones(1 << 20).sum()  # PyTorch's team runs once\n"
        "w = np.random.default_rng(0).standard_normal((512, 2048)).astype(np.float32)\n"
        "a = qatcore.arq(w).output\n"
    )
    child = "ok = np.array_equal(qatcore.arq(w).output, a) and not _core.openmp_threads()"
    assert child_exit_code(parent, child) == "0"


def test_child_that_loads_qatcore_after_the_fork_does_not_hang() -> None:
    """A process forked after PyTorch's team ran, which imports qatcore only then, keeps
    to qatcore's pool."""
    require_torch()
    parent = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(2)\n"
        "torch.ones(1 << 22).sum()  # PyTorch's team runs before the fork\n"
    )
    child = (
        "import qatcore\n"
        "from qatcore import _core\n"
        "qatcore.set_num_threads(2)\n"
        "w = np.random.default_rng(0).standard_normal((512, 2048)).astype(np.float32)\n"
        "ok = qatcore.arq(w).output.shape == w.shape and not _core.openmp_threads()"
    )
    assert child_exit_code(parent, child) == "0"
