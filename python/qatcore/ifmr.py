"""IFMR: the search for initial activation clips (SPEC "IFMR").

Exact mode evaluates every candidate on the data; histogram mode on a
``Histogram`` of it, with each bin's values spread uniformly across the bin and
the squared error integrated exactly over each bin. Both share the start
points and the candidates below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import F32, as_float32, c_contiguous, check_bool, check_num_bits
from .fake_quant import QuantParams
from .histogram import Histogram

__all__ = ["IfmrResult", "ifmr"]

_MAX_CANDIDATES = 100_000


@dataclass(frozen=True, eq=False)
class IfmrResult:
    """The chosen clips, their quantization parameters and the whole search curve.

    ``clips`` are the candidate upper clips (``ratios`` times the start point),
    ``losses`` the mean squared error of each; ``best_index`` is the first
    minimum. ``exact`` is True when the losses were computed on the data itself.
    ``histogram`` is the data's histogram; in exact mode it is built on first use
    (by ``plot``), from the array that was passed, so modify that array only after.
    """

    clip_min: float
    clip_max: float
    params: QuantParams
    ratios: NDArray[np.float64]
    clips: NDArray[np.float32]
    losses: NDArray[np.float64]
    best_index: int
    max_init: float
    min_init: float
    exact: bool
    _plot_data: Histogram | F32 = field(repr=False)

    @cached_property
    def histogram(self) -> Histogram:
        """The data's histogram: the searched one, or in exact mode one built now."""
        src = self._plot_data
        return src if isinstance(src, Histogram) else Histogram().observe(src)

    def plot(self, ax: Any = None) -> Any:
        """Draw the data histogram, the chosen clips and the loss curve; return the axes.

        Needs matplotlib (``pip install qatcore[plot]``); imported only here.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError(
                "IfmrResult.plot needs matplotlib, which is not installed: "
                "pip install 'qatcore[plot]'"
            ) from e

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4.5))
        h = self.histogram
        # Display only: neighbouring bins merged so that about 200 remain visible.
        group = max(1, -(-len(h.counts) // 200))
        pad = -len(h.counts) % group
        counts = np.pad(h.counts, (0, pad)).reshape(-1, group).sum(axis=1)
        edges = h.edges[::group]
        if len(edges) == len(counts):
            edges = np.append(edges, h.edges[-1] + pad * h.bin_width)
        ax.stairs(counts, edges, fill=True, alpha=0.45, color="C0", label="data")
        if counts.size and counts.max() > 0:
            ax.set_yscale("log")
        ax.axvline(self.clip_min, color="C3", ls="--", label=f"clip_min {self.clip_min:.4g}")
        ax.axvline(self.clip_max, color="C3", ls="-", label=f"clip_max {self.clip_max:.4g}")
        ax.set_xlabel("value")
        ax.set_ylabel("count")
        curve = ax.twinx()
        curve.plot(self.clips, self.losses, color="C1", marker=".", ms=3, label="MSE per candidate")
        curve.plot(
            [self.clips[self.best_index]],
            [self.losses[self.best_index]],
            "o",
            color="C3",
            label="chosen",
        )
        curve.set_ylabel("mean squared error")
        handles = ax.get_legend_handles_labels()
        more = curve.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize="small")
        mode = "exact" if self.exact else f"histogram, {len(h.counts)} bins"
        ax.set_title(
            f"IFMR ({mode}): {h.count} values, scale {float(self.params.scale):.4g}, "
            f"zero point {int(self.params.zero_point)}"
        )
        return ax


def _check_percentile(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name}: expected a float in (0, 1], got {value!r}")
    p = float(value)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"{name}: expected a float in (0, 1], got {p!r}")
    return p


def _ratios(search_range: object, search_step: object) -> NDArray[np.float64]:
    """SPEC step 2: start + i * step, end inclusive, n = floor((end - start) / step + 1e-6) + 1."""
    try:
        start, end = (float(v) for v in search_range)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(f"search_range: expected (start, end), got {search_range!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and 0.0 < start <= end):
        raise ValueError(
            f"search_range: expected finite 0 < start <= end, got ({start!r}, {end!r})"
        )
    if isinstance(search_step, bool) or not isinstance(search_step, (int, float, np.floating)):
        raise TypeError(f"search_step: expected a positive float, got {search_step!r}")
    step = float(search_step)
    if not (math.isfinite(step) and step > 0.0):
        raise ValueError(f"search_step: expected a positive float, got {step!r}")
    n = math.floor((end - start) / step + 1e-6) + 1
    if n > _MAX_CANDIDATES:
        raise ValueError(
            f"search_step: expected at most {_MAX_CANDIDATES} candidates over {search_range!r}, "
            f"got {n}"
        )
    return start + np.arange(n, dtype=np.float64) * step


def _rank(n: int, percentile: float) -> int:
    """SPEC step 1: which largest (or smallest) value is the start point, 1-based."""
    return 1 if 1.0 - percentile < _core.EPS else n - math.floor(percentile * n)


def _kth_from_histogram(h: Histogram, k: int, largest: bool) -> float:
    """The k-th largest (smallest) value, interpolated inside its bin, within [min, max]."""
    if k == 1:
        return h.max if largest else h.min
    counts = h.counts[::-1] if largest else h.counts
    cum = np.cumsum(counts)
    j = int(np.searchsorted(cum, k))
    rank_in_bin = k - (int(cum[j]) - int(counts[j]))  # 1-based, from the outer side
    b = len(counts) - 1 - j if largest else j
    edges = h.edges
    lo, hi = max(float(edges[b]), h.min), min(float(edges[b + 1]), h.max)
    frac = (rank_in_bin - 0.5) / int(counts[j])
    value = hi - frac * (hi - lo) if largest else lo + frac * (hi - lo)
    return min(max(value, h.min), h.max)


def _candidates(
    ratios: NDArray[np.float64],
    max0: float,
    min0: float,
    bits: int,
    with_offset: bool,
    fixed_min: bool,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int32], NDArray[np.bool_]]:
    """SPEC step 3: the candidate upper clips, their (scale, zero point), and which are valid.

    A candidate is valid when its whole grid fits in float32: the clip, the scale and
    both ends s * (qmin - z), s * (qmax - z) are finite. Near float32's maximum some
    are not; they get an infinite loss and are never chosen.
    """
    qmin, qmax = (np.float32(v) for v in _core.qrange(bits))
    n = len(ratios)
    scales = np.ones(n, np.float32)
    zero_points = np.zeros(n, np.int32)
    with np.errstate(over="ignore"):
        if not with_offset and not fixed_min:
            clips = (ratios * max(max0, -min0)).astype(np.float32)
            valid = np.isfinite(clips)
            s = clips[valid] / qmax
            scales[valid] = np.where(s >= np.float32(_core.EPS), s, np.float32(1))
        else:
            clips = (ratios * max0).astype(np.float32)
            lower = np.float32(min0)
            valid = np.isfinite(clips) & np.isfinite(clips - lower)
            s, z = _core.ulq_params(
                np.full(int(valid.sum()), lower, np.float32), clips[valid], fixed_min, bits
            )
            scales[valid], zero_points[valid] = s, z
        zf = zero_points.astype(np.float32)  # float32 products, as the grid is computed
        ends = scales * (qmin - zf), scales * (qmax - zf)
    valid &= np.isfinite(ends[0]) & np.isfinite(ends[1])
    return clips, scales, zero_points, valid


def ifmr(
    data_or_histogram: ArrayLike | Histogram,
    *,
    num_bits: int = 8,
    with_offset: bool = False,
    fixed_min: bool = False,
    max_percentile: float = 0.999999,
    min_percentile: float = 0.999999,
    search_range: tuple[float, float] = (0.7, 1.3),
    search_step: float = 0.01,
) -> IfmrResult:
    """Search the clip that minimises the quantization error (SPEC "IFMR").

    An array runs exact mode (each candidate evaluated on the data, read once);
    a ``Histogram`` runs histogram mode (cost proportional to bins x candidates),
    the production path for calibration streamed over ``batch_num`` batches.
    """
    bits = check_num_bits(num_bits)
    offset = check_bool(with_offset, "with_offset")
    fixed = check_bool(fixed_min, "fixed_min")
    p_max = _check_percentile(max_percentile, "max_percentile")
    p_min = _check_percentile(min_percentile, "min_percentile")
    ratios = _ratios(search_range, search_step)

    if isinstance(data_or_histogram, Histogram):
        hist = Histogram.from_state(data_or_histogram.to_state())  # a consistent snapshot
        if hist.count == 0:
            raise ValueError(
                "data_or_histogram: expected a histogram with observations, got an empty one"
            )
        n = hist.count
        top = _kth_from_histogram(hist, _rank(n, p_max), largest=True)
        bottom = _kth_from_histogram(hist, _rank(n, p_min), largest=False)
        source: Histogram | F32 = hist
    else:
        data = c_contiguous(as_float32(data_or_histogram, "data_or_histogram")).reshape(-1)
        if data.size == 0:
            raise ValueError("data_or_histogram: expected at least one value, got an empty array")
        _, _, finite = _core.minmax(data)
        if not finite:
            raise ValueError("data_or_histogram: expected finite values, got NaN or inf")
        n = data.size
        kmax, kmin = _rank(n, p_max), _rank(n, p_min)
        top = float(np.partition(data, n - kmax)[n - kmax])
        bottom = float(np.partition(data, kmin - 1)[kmin - 1])
        source = data

    max0 = max(0.0, top)
    min0 = 0.0 if fixed else min(0.0, bottom)
    clips, scales, zero_points, valid = _candidates(ratios, max0, min0, bits, offset, fixed)
    if not valid.any():
        raise ValueError(
            "data_or_histogram: no candidate clip has a quantization grid inside float32 "
            f"(the start points are {min0!r} and {max0!r}); use a smaller search_range"
        )
    sums = np.full(len(ratios), np.inf)
    if not isinstance(source, Histogram):
        sums[valid] = _core.data_sq_errors(source, scales[valid], zero_points[valid], bits)
    else:
        hist = source
        counts = hist.counts
        nonzero = np.flatnonzero(counts)
        edges = hist.edges
        lo = np.maximum(edges[nonzero], hist.min)  # the outer bins end at the exact extremes
        hi = np.minimum(edges[nonzero + 1], hist.max)
        sums[valid] = _core.hist_sq_errors(
            lo, hi, counts[nonzero].astype(np.float64), scales[valid], zero_points[valid], bits
        )
    losses = sums / n
    best = int(np.argmin(losses))
    s, z = np.float32(scales[best]), int(zero_points[best])
    qmin, qmax = _core.qrange(bits)
    return IfmrResult(
        clip_min=float(s * np.float32(qmin - z)),
        clip_max=float(s * np.float32(qmax - z)),
        params=QuantParams(np.asarray(s), np.asarray(z, np.int32), num_bits=bits),
        ratios=ratios,
        clips=clips,
        losses=losses,
        best_index=best,
        max_init=max0,
        min_init=min0,
        exact=not isinstance(source, Histogram),
        _plot_data=source,
    )
