"""Huge tensors, concurrent callers and leaks."""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc

import numpy as np
import pytest

import qatcore
import reference as ref
from helpers import assert_same_floats, run_python


def mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


BIG = 2**31 + 2  # elements: past every 32-bit index, and even (two channels of 2**30 + 1)


@pytest.mark.bigmem
@pytest.mark.skipif(os.environ.get("QATCORE_SANITIZED") == "1", reason="8.6 GB under ASan")
@pytest.mark.skipif(mem_available() < 12 * 2**30, reason="needs 12 GiB of free memory")
def test_more_than_2_to_the_31_elements() -> None:
    """One 8.6 GB buffer, reused in place by every kernel (no second copy fits)."""
    x = np.zeros(BIG, np.float32)
    marks = {0: 1.0, 2**31 - 1: -2.6, 2**31: 3.3, 2**31 + 1: 127.0}  # around the boundary
    for i, v in marks.items():
        x[i] = v
    idx = np.array(sorted(marks))

    # Histogram and IFMR (histogram mode): counts exact over every element.
    h = qatcore.Histogram().observe(x)
    assert h.count == BIG and h.min == float(np.float32(-2.6)) and h.max == 127.0
    assert int(h.counts.sum()) == BIG
    zero_bin = int(np.searchsorted(h.edges, 0.0, side="right")) - 1
    assert h.counts[zero_bin] == BIG - 4  # everything but the four marks
    r = qatcore.ifmr(h, max_percentile=1.0, min_percentile=1.0)
    assert (r.max_init, r.min_init) == (127.0, float(np.float32(-2.6)))

    # ARQ, one channel of more than 2**31 elements (per tensor), in place: scale 127/127 = 1.
    res = qatcore.arq(x, channel_wise=False, out=x)
    assert float(res.params.scale) == 1.0
    assert x[idx].tolist() == [1.0, -3.0, 3.0, 127.0]
    # ARQ per channel, two channels of 2**30 + 1: the second holds the last three marks.
    two = x.reshape(2, BIG // 2)
    res = qatcore.arq(two, out=two)
    assert res.params.scale.tolist() == [np.float32(1.0) / np.float32(127), 1.0]
    assert x[idx].tolist() == [1.0, -3.0, 3.0, 127.0]

    # ULQ forward in place, then backward with x, grad_output and out all one buffer.
    fwd = qatcore.ulq_forward(x, -4.0, 4.0, out=x)
    want = ref.fake_quant(
        np.float32([1.0, -3.0, 3.0, 127.0]), fwd.params.scale, fwd.params.zero_point, 8
    )[1]
    assert_same_floats(x[idx], want)
    # The forward left 127 exactly on the effective upper bound: inside, so every mark's
    # gradient passes, and the clip gradients are sums over the four marks alone.
    grads = qatcore.ulq_backward(x, x, -4.0, 4.0, out=x)
    assert_same_floats(x[idx], want)
    _, gmin, gmax = ref.ulq_backward(want, want, -4.0, 4.0)
    assert float(grads.grad_clip_max) == pytest.approx(gmax, rel=1e-6)
    assert float(grads.grad_clip_min) == pytest.approx(gmin, rel=1e-6, abs=1e-6)
    assert np.count_nonzero(x) == 4


def test_concurrent_callers_get_exact_results() -> None:
    """ARQ, ULQ both ways and Histogram.observe from several Python threads at once (the
    GIL is released in the kernels), on separate histograms and on one shared one."""
    rng = np.random.default_rng(12)
    ws = [rng.standard_normal((129, 515)).astype(np.float32) for _ in range(3)]
    xs = [rng.standard_normal(70_001).astype(np.float32) * (i + 1) for i in range(3)]
    want_arq = [ref.arq(w)[0] for w in ws]
    want_fwd = [ref.ulq_forward(x, -1.5, 2.0)[0] for x in xs]
    want_bwd = [ref.ulq_backward(x, x, -1.5, 2.0) for x in xs]
    want_hist = [qatcore.Histogram().observe(x).to_state() for x in xs]
    shared = qatcore.Histogram()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(4):
                assert_same_floats(qatcore.arq(ws[i]).output, want_arq[i])
                assert_same_floats(qatcore.ulq_forward(xs[i], -1.5, 2.0).output, want_fwd[i])
                g = qatcore.ulq_backward(xs[i], xs[i], -1.5, 2.0)
                assert_same_floats(g.grad_input, want_bwd[i][0])
                assert float(g.grad_clip_max) == pytest.approx(want_bwd[i][2], rel=1e-6)
                own = qatcore.Histogram().observe(xs[i]).to_state()
                assert np.array_equal(own.pop("counts"), want_hist[i]["counts"])
                shared.observe(xs[i])
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    with qatcore.use_backend(num_threads=2):
        threads = [threading.Thread(target=work, args=(i % 3,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    together = qatcore.Histogram()
    for _ in range(8):
        for x in xs:
            together.observe(x)
    state, want = shared.to_state(), together.to_state()
    assert np.array_equal(state.pop("counts"), want.pop("counts")) and state == want


@pytest.mark.skipif(os.environ.get("QATCORE_SANITIZED") == "1", reason="ASan changes the RSS")
def test_histogram_scratch_memory_does_not_grow_with_threads() -> None:
    """Histogram.observe with 16 threads uses scratch bounded by a constant (32 MiB),
    not private counts per thread (4M bins: 32 MiB of int64 each), and counts the
    same as with one thread. Measured as the rise of the peak RSS of a fresh process
    over what a one-thread observe of the same data already reached."""
    code = (
        "import resource, numpy as np, qatcore\n"
        "x = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32)\n"
        "def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "qatcore.set_num_threads(1)\n"
        "one = qatcore.Histogram(max_bins=1 << 22).observe(x)\n"
        "base = peak()\n"
        "qatcore.set_num_threads(16)\n"
        "many = qatcore.Histogram(max_bins=1 << 22).observe(x)\n"
        "print(peak() - base, int(np.array_equal(many.counts, one.counts)))\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    rise, same = (int(v) for v in proc.stdout.split())
    assert same == 1, "counts differ between 1 and 16 threads"
    # One more count array (32 MiB) plus at most 32 MiB of scratch, with room to spare;
    # private counts per thread would add 15 x 32 MiB.
    assert rise < 160 * 2**20, f"peak RSS rose by {rise / 2**20:.0f} MiB with 16 threads"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def every_entry_point(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    p = qatcore.arq(w, out=np.empty_like(w)).params
    qatcore.fake_quantize(w, p, out=np.empty_like(w))
    qatcore.dequantize(qatcore.quantize(w, p), p)
    qatcore.ulq_forward(x, -1.0, 1.0, out=out)
    qatcore.ulq_backward(x, x, -1.0, 1.0, out=out)
    h = qatcore.Histogram().observe(x)
    qatcore.ifmr(h)
    qatcore.ifmr(x[:5000])
    for bad in (
        lambda: qatcore.arq(np.float32([np.nan])),  # error paths must not leak either
        lambda: qatcore.ulq_forward(x, np.nan, 1.0),
        lambda: h.observe(np.float32([np.inf])),
        lambda: qatcore._core.fake_quantize(x, out[:3], p.scale, p.zero_point, None, 8),
    ):
        try:
            bad()
        except ValueError:
            pass


def test_no_memory_growth_over_repeated_calls() -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal(50_000).astype(np.float32)
    w = rng.standard_normal((64, 300)).astype(np.float32)
    out = np.empty_like(x)
    for _ in range(30):  # warm-up: caches, pools, lazy imports
        every_entry_point(x, w, out)
    gc.collect()
    tracemalloc.start()
    rss0 = rss_bytes()
    snap0 = tracemalloc.take_snapshot()
    for _ in range(300):
        every_entry_point(x, w, out)
    gc.collect()
    growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap0, "filename"))
    tracemalloc.stop()
    rss_growth = rss_bytes() - rss0
    assert growth < 64 * 1024, f"Python heap grew by {growth} bytes over 300 rounds"
    if os.environ.get("QATCORE_SANITIZED") != "1":  # ASan's quarantine keeps freed memory
        assert rss_growth < 8 * 2**20, f"resident size grew by {rss_growth / 2**20:.1f} MiB"
