"""IFMR and its histogram: exactness, order independence, reference parity, accuracy."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qatcore
import reference as ref
from helpers import on_every_backend, require_module
from strategies import f32, finite_f32


def same_state(a: qatcore.Histogram, b: qatcore.Histogram) -> bool:
    sa, sb = a.to_state(), b.to_state()
    counts_a, counts_b = sa.pop("counts"), sb.pop("counts")
    return sa == sb and np.array_equal(counts_a, counts_b) and counts_a.dtype == counts_b.dtype


def assert_histogram_of(h: qatcore.Histogram, data: np.ndarray) -> None:
    """counts are exactly what NumPy gets placing each value in [edges[i], edges[i+1])."""
    x = data.astype(np.float64).ravel()
    assert h.count == x.size and h.min == x.min() and h.max == x.max()
    edges = h.edges
    idx = np.searchsorted(edges, x, side="right") - 1
    assert idx.min() >= 0 and idx.max() < len(h.counts)
    assert np.array_equal(np.bincount(idx, minlength=len(h.counts)), h.counts)
    assert h.counts[0] > 0 and h.counts[-1] > 0
    if h.min < h.max:
        assert len(h.counts) > h.max_bins / 2, "keeps at least max_bins / 2 bins"
    assert len(h.counts) <= h.max_bins


@given(
    data=hnp.arrays(np.float32, st.integers(1, 400), elements=finite_f32),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    order=st.randoms(use_true_random=False),
    max_bins=st.sampled_from([2, 3, 16, 101, 16384]),
)
def test_histogram_is_exact_and_order_independent(
    data: np.ndarray, cuts: list[int], order, max_bins: int
) -> None:
    parts = np.split(data, sorted(c % (data.size + 1) for c in cuts))
    whole = qatcore.Histogram(max_bins).observe(data)
    assert_histogram_of(whole, data)
    one_by_one = qatcore.Histogram(max_bins)
    shuffled = list(parts)
    order.shuffle(shuffled)
    for p in shuffled:
        if p.size:
            one_by_one.observe(p)
    assert same_state(one_by_one, whole)
    merged = qatcore.Histogram(max_bins)
    for p in parts[::-1]:
        merged.merge(
            qatcore.Histogram(max_bins).observe(p) if p.size else qatcore.Histogram(max_bins)
        )
    assert same_state(merged, whole)
    restored = qatcore.Histogram.from_state(whole.to_state())
    assert same_state(restored, whole)


@given(data=hnp.arrays(np.float32, st.integers(1, 3000), elements=finite_f32))
def test_histogram_is_the_same_at_every_isa_and_thread_count(data: np.ndarray) -> None:
    states = [
        h.to_state() for _, h in on_every_backend(lambda: qatcore.Histogram(64).observe(data))
    ]
    for s in states[1:]:
        assert np.array_equal(s.pop("counts"), states[0]["counts"])
        assert s == {k: v for k, v in states[0].items() if k != "counts"}


def test_histogram_real_chunking() -> None:
    rng = np.random.default_rng(4)
    data = rng.standard_normal(1_000_003).astype(np.float32)
    results = [
        h for _, h in on_every_backend(lambda: qatcore.Histogram().observe(data), grain=None)
    ]
    assert_histogram_of(results[0], data)
    assert all(same_state(h, results[0]) for h in results[1:])


ifmr_options = st.fixed_dictionaries(
    {
        "num_bits": st.sampled_from([8, 8, 4, 2, 16]),
        "with_offset": st.booleans(),
        "fixed_min": st.booleans(),
        "max_percentile": st.sampled_from([0.999999, 1.0, 0.999, 0.9, 0.5]),
        "min_percentile": st.sampled_from([0.999999, 1.0, 0.99, 0.7]),
        "search_range": st.sampled_from([(0.7, 1.3), (0.5, 1.0), (1.0, 1.0), (0.3, 1.7)]),
        "search_step": st.sampled_from([0.01, 0.05, 0.1, 0.003]),
    }
)


@given(
    data=hnp.arrays(
        np.float32,
        st.integers(1, 2000),
        elements=st.one_of(
            st.floats(f32(-50), f32(50), width=32), st.floats(f32(-1e-3), f32(1e-3), width=32)
        ),
    ),
    options=ifmr_options,
)
def test_exact_mode_matches_reference(data: np.ndarray, options: dict) -> None:
    want = ref.ifmr(data, **options)
    for label, got in on_every_backend(lambda: qatcore.ifmr(data, **options)):
        assert got.exact
        assert got.max_init == want["max_init"] and got.min_init == want["min_init"], label
        np.testing.assert_array_equal(got.ratios, want["ratios"])
        np.testing.assert_array_equal(got.clips, want["clips"])
        np.testing.assert_allclose(got.losses, want["losses"], rtol=1e-12, atol=0, err_msg=label)
        if got.best_index != want["best"]:
            # Only a tie within float64 summation order may pick another candidate.
            assert got.losses[got.best_index] == pytest.approx(
                want["losses"][want["best"]], rel=1e-12
            ), label
            continue
        assert float(got.params.scale) == want["scale"], label
        assert int(got.params.zero_point) == want["zero_point"], label
        assert got.clip_max == want["clip_max"] and got.clip_min == want["clip_min"], label


@given(
    data=hnp.arrays(
        np.float32, st.integers(1, 3000), elements=st.floats(f32(-9), f32(9), width=32)
    ),
    options=ifmr_options,
)
def test_histogram_mode_is_the_same_at_every_isa_and_thread_count(
    data: np.ndarray, options
) -> None:
    hist = qatcore.Histogram(1024).observe(data)
    results = [r for _, r in on_every_backend(lambda: qatcore.ifmr(hist, **options))]
    for r in results:
        assert not r.exact
        np.testing.assert_array_equal(r.losses, results[0].losses)
        assert r.params == results[0].params and r.clip_max == results[0].clip_max


@given(
    data=hnp.arrays(
        np.float32,
        st.integers(1, 200),
        elements=st.one_of(
            st.floats(f32(-9), f32(9), width=32),
            st.floats(f32(-1e-3), f32(1e-3), width=32),
            st.integers(-40, 40).map(lambda k: k / 8),  # values on bin edges and code ties
            st.floats(f32(-1e30), f32(1e30), width=32),
            st.floats(f32(-1e-30), f32(1e-30), width=32),
        ),
    ),
    max_bins=st.sampled_from([2, 3, 16, 64]),
    options=ifmr_options.filter(lambda o: o["search_step"] >= 0.01),
)
def test_histogram_mode_losses_match_reference(data: np.ndarray, max_bins: int, options) -> None:
    """Histogram-mode losses against the piecewise-uniform integral of reference.py.

    The kernel works in units of a step (t = v / s) and the reference in values, with
    other formulas for the same integral; measured apart by at most 6e-14 relative, or
    3e-24 * max|v|**2 where a loss nearly vanishes (data on the grid: the error is then a
    difference of nearly equal values). Tolerance 1e-10 relative plus 1e-13 * max|v|**2:
    a factor in the loss, a w**2/12 term or a misplaced code boundary are far outside it.
    Coarse histograms (2 to 64 bins) make most bins straddle many codes and the clip
    ends, so every path of the kernel is taken.
    """
    hist = qatcore.Histogram(max_bins).observe(data)
    got = qatcore.ifmr(hist, **options)
    assert not got.exact
    bits, offset, fixed = options["num_bits"], options["with_offset"], options["fixed_min"]
    ratios, clips, scales, zero_points, valid = ref.ifmr_candidates(
        got.max_init,
        got.min_init,
        bits,
        offset,
        fixed,
        options["search_range"],
        options["search_step"],
    )
    np.testing.assert_array_equal(got.ratios, ratios)
    np.testing.assert_array_equal(got.clips, clips)
    want = ref.ifmr_histogram_losses(
        hist.counts, hist.edges, hist.min, hist.max, scales, zero_points, valid, bits
    )
    np.testing.assert_array_equal(np.isinf(got.losses), np.isinf(want))
    atol = 1e-13 * max(abs(hist.min), abs(hist.max)) ** 2
    np.testing.assert_allclose(got.losses, want, rtol=1e-10, atol=atol)
    # The first minimum, unless another candidate ties within the tolerance.
    assert want[got.best_index] <= want.min() * (1 + 1e-10) + atol
    if got.best_index == int(np.argmin(want)):
        assert float(got.params.scale) == scales[got.best_index]
        assert int(got.params.zero_point) == zero_points[got.best_index]


def histogram_vs_exact_bound(data: np.ndarray, hist: qatcore.Histogram, scale, zp, bits):
    """How far histogram mode's loss may lie from exact mode's, for one candidate.

    With f(v) = (y(v) - v)**2, each value v in a bin [a, b] is replaced by the bin's
    mean of f, which differs from f(v) by at most (b - a) * max |f'| over the bin, and
    |f'| = 2 |y - v| <= 2 * max(s / 2, k_lo * s - a, b - k_hi * s) (half a step inside
    the grid, the distance to the grid's end beyond it). Exact mode rounds in float32
    (the product v * (1/s), the output y): a code can flip within a few ulps of a code
    boundary and y moves by an ulp, each changing f by under 2**-20 * (|v| + s) *
    (s + |y - v|). The sum of both, over N, bounds |loss_hist - loss_exact|.
    """
    qmin, qmax = ref.qrange(bits)
    s = float(scale)
    k_lo, k_hi = qmin - int(zp), qmax - int(zp)
    lo, hi, count = ref.histogram_bins(hist.counts, hist.edges, hist.min, hist.max)
    reach = np.maximum(s / 2, np.maximum(k_lo * s - lo, hi - k_hi * s))
    spread = float(np.sum(count * (hi - lo) * 2 * reach))
    v = data.astype(np.float64).ravel()
    y = ref.fake_quant(data, scale, zp, bits)[1].astype(np.float64).ravel()
    rounding = float(np.sum(2.0**-20 * (np.abs(v) + s) * (s + np.abs(y - v))))
    return (spread + rounding) / v.size


@given(
    data=hnp.arrays(
        np.float32,
        st.integers(1, 400),
        elements=st.one_of(
            st.floats(f32(-9), f32(9), width=32), st.floats(f32(-1e-3), f32(1e-3), width=32)
        ),
    ),
    max_bins=st.sampled_from([16, 256, 4096]),
    options=ifmr_options.filter(lambda o: o["search_step"] >= 0.01),
)
def test_histogram_mode_losses_are_within_the_stated_bound_of_exact_mode(
    data: np.ndarray, max_bins: int, options
) -> None:
    """Every candidate's histogram-mode loss lies within histogram_vs_exact_bound of its
    exact-mode loss on the same data (same start points: percentiles of 1)."""
    options = dict(options, max_percentile=1.0, min_percentile=1.0)
    hist = qatcore.Histogram(max_bins).observe(data)
    approx = qatcore.ifmr(hist, **options)
    exact = qatcore.ifmr(data, **options)
    assert (approx.max_init, approx.min_init) == (exact.max_init, exact.min_init)
    _, _, scales, zero_points, valid = ref.ifmr_candidates(
        exact.max_init,
        exact.min_init,
        options["num_bits"],
        options["with_offset"],
        options["fixed_min"],
        options["search_range"],
        options["search_step"],
    )
    for i in np.flatnonzero(valid):
        bound = histogram_vs_exact_bound(data, hist, scales[i], zero_points[i], options["num_bits"])
        assert abs(approx.losses[i] - exact.losses[i]) <= bound, (i, bound)


def distribution(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "gaussian":
        x = rng.standard_normal(n)
    elif name == "laplace":
        x = rng.laplace(size=n)
    elif name == "uniform":
        x = rng.uniform(-1, 3, n)
    elif name == "relu_gaussian":
        x = np.maximum(rng.standard_normal(n), 0)
    elif name == "student_t3":
        x = rng.standard_t(3, n)
    else:  # a few extreme outliers in Gaussian data
        x = rng.standard_normal(n)
        x[rng.choice(n, 5, replace=False)] = rng.choice([-1, 1], 5) * rng.uniform(50, 500, 5)
    return (x * 0.7).astype(np.float32)


DISTRIBUTIONS = ["gaussian", "laplace", "uniform", "relu_gaussian", "student_t3", "outliers"]


# fixed_min is for non-negative data: ReLU outputs.
CASES = [(name, mode) for name in DISTRIBUTIONS for mode in ("symmetric", "with_offset")]
CASES.append(("relu_gaussian", "fixed_min"))


@pytest.mark.parametrize("n", [10_000, 100_000, 1_000_000])
@pytest.mark.parametrize(("name", "mode"), CASES)
def test_histogram_mode_chooses_as_well_as_exact_mode(name: str, n: int, mode: str) -> None:
    """Histogram mode's loss curve is within 0.5% of exact mode's at every ratio, and
    the exact-data MSE of its choice within 0.5% of exact mode's best.

    Measured (16384 bins): at most 0.33% apart, on the ReLU data, whose point mass at 0
    the histogram spreads across the first bin; at most 0.14% elsewhere. The bound that
    holds for any data is test_histogram_mode_losses_are_within_the_stated_bound_of_...
    """
    rng = np.random.default_rng([DISTRIBUTIONS.index(name), n, len(mode)])
    x = distribution(name, n, rng)
    kwargs = {"with_offset": mode == "with_offset", "fixed_min": mode == "fixed_min"}
    exact = qatcore.ifmr(x, **kwargs)
    hist = qatcore.ifmr(qatcore.Histogram().observe(x), **kwargs)
    assert hist.max_init == pytest.approx(exact.max_init, rel=1e-3)
    # Ratio by ratio (the start points differ by the percentile's interpolation, < 0.1%).
    np.testing.assert_allclose(hist.losses, exact.losses, rtol=5e-3, atol=0)
    y = qatcore.fake_quantize(x, hist.params)
    mse_of_hist_choice = float(np.mean((y.astype(np.float64) - x) ** 2))
    best = exact.losses[exact.best_index]
    assert mse_of_hist_choice <= best * 1.005, (
        mse_of_hist_choice / best - 1,
        hist.best_index,
        exact.best_index,
    )


def test_histogram_percentiles_stay_within_the_observed_range() -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal(2_000_000).astype(np.float32)
    h = qatcore.Histogram().observe(x)
    for p in (0.999999, 0.999, 0.9, 0.5):
        got = qatcore.ifmr(h, max_percentile=p, min_percentile=p)
        want = qatcore.ifmr(x, max_percentile=p, min_percentile=p, search_step=0.3)
        assert h.min <= -got.min_init <= h.max or got.min_init == 0
        assert got.max_init == pytest.approx(want.max_init, abs=2 * h.bin_width)
        assert got.min_init == pytest.approx(want.min_init, abs=2 * h.bin_width)
    exact_top = qatcore.ifmr(h, max_percentile=1.0)
    assert exact_top.max_init == h.max


def test_known_values() -> None:
    x = np.linspace(-1, 2, 10001, dtype=np.float32)
    r = qatcore.ifmr(x)
    assert len(r.ratios) == 61 and r.ratios[0] == 0.7 and r.ratios[-1] == pytest.approx(1.3)
    assert r.max_init == 2.0 and r.min_init == -1.0
    assert r.params.zero_point == 0 and r.clip_max == float(r.params.scale * np.float32(127))
    asym = qatcore.ifmr(x, with_offset=True)
    assert asym.params.zero_point != 0
    assert asym.clip_min == float(
        asym.params.scale * np.float32(-128 - int(asym.params.zero_point))
    )
    relu = qatcore.ifmr(np.abs(x), fixed_min=True)
    assert relu.min_init == 0.0 and relu.params.zero_point == -128 and relu.clip_min == 0.0
    zeros = qatcore.ifmr(np.zeros(10, np.float32))
    assert float(zeros.params.scale) == 1.0 and not zeros.losses.any()


def test_bad_input_leaves_the_histogram_unchanged() -> None:
    h = qatcore.Histogram(128).observe(np.float32([0.5, -2.0, 3.0]))
    before = h.to_state()
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="^x: expected finite values"):
            h.observe(np.float32([1.0, bad, 100.0]))
        after = h.to_state()
        assert np.array_equal(after.pop("counts"), before["counts"])
        assert after == {k: v for k, v in before.items() if k != "counts"}
    with pytest.raises(ValueError, match="^x: expected at least one value"):
        h.observe(np.zeros((0, 3), np.float32))
    with pytest.raises(TypeError, match="^x: expected a real floating-point array"):
        h.observe(np.arange(3))
    with pytest.raises(ValueError, match="^other: expected a histogram with max_bins=128"):
        h.merge(qatcore.Histogram(256))
    with pytest.raises(TypeError, match="^other: expected a Histogram"):
        h.merge(before)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_bins: expected an integer in \[2, "):
        qatcore.Histogram(1)
    broken = dict(before, count=before["count"] + 1)
    with pytest.raises(ValueError, match="^state: counts, exponent and offset do not match"):
        qatcore.Histogram.from_state(broken)
    with pytest.raises(ValueError, match="^state: expected format"):
        qatcore.Histogram.from_state({"counts": []})


def test_ifmr_bad_arguments_name_themselves() -> None:
    x = np.float32([0.1, -0.2, 0.3])
    with pytest.raises(
        ValueError, match="^data_or_histogram: expected a histogram with observations"
    ):
        qatcore.ifmr(qatcore.Histogram())
    with pytest.raises(ValueError, match="^data_or_histogram: expected at least one value"):
        qatcore.ifmr(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="^data_or_histogram: expected finite values"):
        qatcore.ifmr(np.float32([1, np.nan]))
    for p in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"^max_percentile: expected a float in \(0, 1\]"):
            qatcore.ifmr(x, max_percentile=p)
        with pytest.raises(ValueError, match=r"^min_percentile: expected a float in \(0, 1\]"):
            qatcore.ifmr(x, min_percentile=p)
    with pytest.raises(ValueError, match="^search_range: expected finite 0 < start <= end"):
        qatcore.ifmr(x, search_range=(1.3, 0.7))
    with pytest.raises(TypeError, match=r"^search_range: expected \(start, end\)"):
        qatcore.ifmr(x, search_range=1.0)  # type: ignore[arg-type]
    for step in (0.0, -0.01, math.inf):
        with pytest.raises(ValueError, match="^search_step: expected a positive float"):
            qatcore.ifmr(x, search_step=step)
    with pytest.raises(ValueError, match="^search_step: expected at most"):
        qatcore.ifmr(x, search_step=1e-9)
    with pytest.raises(TypeError, match="^with_offset: expected True or False"):
        qatcore.ifmr(x, with_offset="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^num_bits: expected an integer in \[2, 16\]"):
        qatcore.ifmr(x, num_bits=17)


def test_shared_histogram_from_several_threads() -> None:
    rng = np.random.default_rng(8)
    batches = [rng.standard_normal(50_000).astype(np.float32) * (i + 1) for i in range(8)]
    shared = qatcore.Histogram()
    threads = [threading.Thread(target=shared.observe, args=(b,)) for b in batches]
    with qatcore.use_backend(num_threads=2):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert same_state(shared, qatcore.Histogram().observe(np.concatenate(batches)))


def test_core_histogram_add_never_writes_out_of_bounds() -> None:
    """Out-of-range values are clamped to the end bins: below the range, -inf and NaN
    to bin 0, above it and +inf to the top bin (the kernel's documented contract),
    the same at every level, with and without the 16-bit staging counters."""
    from qatcore import _core

    x = np.float32([np.nan, np.inf, -np.inf, -1e30, 1e30, 2.5])

    def binned(nbins: int) -> np.ndarray:
        counts = np.zeros(nbins, np.int64)
        _core.histogram_add(x, counts, 1.0, 0.0)
        return counts

    for nbins in (4, 1 << 17):  # staged in 16-bit counters, and counted directly
        for label, counts in on_every_backend(lambda n=nbins: binned(n)):
            want = np.zeros(nbins, np.int64)
            want[[0, 2, -1]] = [3, 1, 2]  # NaN, -inf, -1e30 | 2.5 | +inf, 1e30
            assert np.array_equal(counts, want), label
    with pytest.raises(ValueError, match="^counts: expected a 1-d array"):
        _core.histogram_add(np.float32([1]), np.zeros(0, np.int64), 1.0, 0.0)


def test_exact_mode_builds_its_histogram_only_for_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    """ifmr() on an array needs no histogram; the result builds one when asked (plot)."""
    observed: list[int] = []
    real_observe = qatcore.Histogram.observe

    def counting_observe(self: qatcore.Histogram, x: np.ndarray) -> qatcore.Histogram:
        observed.append(np.size(x))
        return real_observe(self, x)

    monkeypatch.setattr(qatcore.Histogram, "observe", counting_observe)
    x = np.random.default_rng(3).standard_normal(10_000).astype(np.float32)
    r = qatcore.ifmr(x)
    assert observed == [], "exact mode built a histogram nobody asked for"
    h = r.histogram
    assert observed == [x.size] and r.histogram is h  # built once, on first use
    assert same_state(h, qatcore.Histogram().observe(x))


def test_plot() -> None:
    matplotlib = require_module("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.random.default_rng(1).standard_normal(20_000).astype(np.float32)
    for r in (qatcore.ifmr(x), qatcore.ifmr(qatcore.Histogram().observe(x))):
        ax = r.plot()
        xs = {line.get_xdata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2}
        assert r.clip_max in xs and r.clip_min in xs
        assert "IFMR" in ax.get_title()
        plt.close(ax.figure)
    fig, ax = plt.subplots()
    assert qatcore.ifmr(x).plot(ax=ax) is ax
    plt.close(fig)


def test_regression_tiny_negative_next_to_a_large_offset() -> None:
    """Found by hypothesis: floor(x / w) - offset computed as floor(x / w - offset)
    rounded -3.8e-31 / 2 - (-1) up to 1.0 and put it in the wrong bin."""
    data = np.float32([-3.7787975e-31, 1.0])
    h = qatcore.Histogram(2).observe(data)
    assert h.counts.tolist() == [1, 1]
    assert_histogram_of(h, data)


@pytest.mark.parametrize("threads", [1, 2])
def test_regression_more_than_65535_values_in_one_bin(threads: int) -> None:
    """The kernel counts in 16-bit counters flushed every 65535 values."""
    x = np.zeros(1_000_003, np.float32)
    x[::7] = 1.0
    with qatcore.use_backend(num_threads=threads):
        h = qatcore.Histogram(16).observe(x)
    assert h.counts[0] == 857_145 and h.counts[-1] == 142_858 and h.counts.sum() == x.size


@pytest.mark.parametrize("with_offset", [False, True])
def test_regression_candidates_beyond_float32_are_skipped(with_offset: bool) -> None:
    """Found by the fuzzer: near float32's maximum, 1.3 x max overflows. Only candidates
    whose grid (clip, scale, both ends) is finite compete; the result stays finite."""
    x = np.float32([2.6e38, -1e38, 0.0])
    for r in (
        qatcore.ifmr(x, with_offset=with_offset),
        qatcore.ifmr(qatcore.Histogram().observe(x), with_offset=with_offset),
    ):
        assert np.isinf(r.losses).any() and np.isfinite(r.losses[r.best_index])
        assert math.isfinite(r.clip_min) and math.isfinite(r.clip_max)
    want = ref.ifmr(x, with_offset=with_offset)
    assert qatcore.ifmr(x, with_offset=with_offset).best_index == want["best"]
    with pytest.raises(ValueError, match="^data_or_histogram: no candidate clip has a quant"):
        qatcore.ifmr(np.float32([3.4e38]), search_range=(1.2, 1.3))
