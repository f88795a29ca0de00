"""A streaming histogram that is exact and independent of order and splitting.

Bins are aligned at zero and have width ``2**exponent``. The exponent is a
function of the observed range (and ``max_bins``) alone: the smallest one at
which ``[min, max]`` fits in ``max_bins`` bins, floored so that bin indices
stay below ``2**48``. It never decreases as the range grows, and bins of width
``2**(k+1)`` are exactly pairs of bins of width ``2**k``, so old counts
coarsen without error. Observing batches one by one, observing their
concatenation, observing them in another order or merging histograms of
disjoint parts therefore all give the same state, bit for bit.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import as_float32, c_contiguous, check_int

__all__ = ["Histogram"]

_MIN_EXPONENT = -200  # finer than any float32 spacing (2**-149)
_INDEX_BITS = 48  # |bin index| < 2**48: exact in float64, far from int64 overflow
_MAX_BINS = 1 << 24
_STATE_FORMAT = "qatcore.Histogram/1"


def _bin_index(value: float, exponent: int) -> int:
    return math.floor(math.ldexp(value, -exponent))  # exact: a power-of-two scaling


def _exponent(lo: float, hi: float, max_bins: int) -> int:
    """The canonical width exponent for an observed range [lo, hi]."""
    magnitude = max(abs(lo), abs(hi))
    k = _MIN_EXPONENT
    if magnitude > 0:
        k = max(k, math.frexp(magnitude)[1] - _INDEX_BITS)
    if hi > lo:  # spans >= (hi - lo) / width bins, so no smaller k can fit: start near it
        k = max(k, math.frexp((hi - lo) / max_bins)[1] - 2)
    while _bin_index(hi, k) - _bin_index(lo, k) + 1 > max_bins:
        k += 1
    return k


def observed_range(data: NDArray[np.float32]) -> tuple[float, float]:
    """(min, max) of float32 ``data`` (one pass); empty or non-finite data raise ``ValueError``."""
    data = c_contiguous(data)
    if data.size == 0:
        raise ValueError("x: expected at least one value, got an empty array")
    lo, hi, finite = _core.minmax(data)
    if not finite:
        bad = data.ravel()[np.flatnonzero(~np.isfinite(data.ravel()))[0]]
        raise ValueError(
            f"x: expected finite values (a histogram cannot place them), got {bad!r}; "
            "nothing was recorded"
        )
    return float(lo), float(hi)


class Histogram:
    """Streaming histogram of float32 data for IFMR calibration.

    ``observe`` batches (NaN or inf raise ``ValueError`` and change nothing),
    ``merge`` histograms of other parts, save and restore with ``to_state`` /
    ``from_state``. ``min``/``max`` are exact; ``counts`` (int64) and ``edges``
    (float64) describe at least ``max_bins / 2`` bins across the observed range
    once it is wider than a few float32 ulps. Safe to share between threads; copies
    (``copy.deepcopy``, ``pickle``) are independent of the original.
    """

    def __init__(self, max_bins: int = 16384) -> None:
        bins = check_int(max_bins, "max_bins")
        if not 2 <= bins <= _MAX_BINS:
            raise ValueError(f"max_bins: expected an integer in [2, {_MAX_BINS}], got {bins}")
        self._max_bins = bins
        self._count = 0
        self._min = math.inf
        self._max = -math.inf
        self._exponent = _MIN_EXPONENT
        self._offset = 0
        self._counts: NDArray[np.int64] = np.zeros(0, np.int64)
        self._lock = threading.Lock()

    # Copies and pickles carry the state, never the lock: each object has its own.
    def __getstate__(self) -> dict[str, Any]:
        with self._lock:  # a consistent snapshot: _commit replaces the arrays, never edits
            state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # Read-only views of the state.
    @property
    def max_bins(self) -> int:
        return self._max_bins

    @property
    def count(self) -> int:
        """Values observed."""
        return self._count

    @property
    def min(self) -> float:
        """Exact minimum observed (``inf`` while empty)."""
        return self._min

    @property
    def max(self) -> float:
        """Exact maximum observed (``-inf`` while empty)."""
        return self._max

    @property
    def bin_width(self) -> float:
        return math.ldexp(1.0, self._exponent)

    @property
    def counts(self) -> NDArray[np.int64]:
        view = self._counts.view()
        view.setflags(write=False)
        return view

    @property
    def edges(self) -> NDArray[np.float64]:
        """``len(counts) + 1`` bin edges; bin i holds values in ``[edges[i], edges[i+1])``."""
        idx = np.arange(self._offset, self._offset + len(self._counts) + 1, dtype=np.float64)
        return np.ldexp(idx, self._exponent)

    def __repr__(self) -> str:
        return (
            f"Histogram(count={self._count}, min={self._min!r}, max={self._max!r}, "
            f"bins={len(self._counts)}, bin_width={self.bin_width!r}, max_bins={self._max_bins})"
        )

    def _coarsened(self, exponent: int, offset: int, nbins: int) -> NDArray[np.int64]:
        """This histogram's counts on the grid (exponent, offset, nbins): a new array."""
        out = np.zeros(nbins, np.int64)
        if self._count:
            shift = exponent - self._exponent
            old = np.arange(self._offset, self._offset + len(self._counts), dtype=np.int64)
            np.add.at(out, (old >> shift) - offset, self._counts)
        return out

    def _grid(self, lo: float, hi: float) -> tuple[int, int, int]:
        k = _exponent(lo, hi, self._max_bins)
        offset = _bin_index(lo, k)
        return k, offset, _bin_index(hi, k) - offset + 1

    def _commit(
        self,
        counts: NDArray[np.int64],
        grid: tuple[int, int, int],
        count: int,
        lo: float,
        hi: float,
    ) -> None:
        self._exponent, self._offset, _ = grid
        self._counts, self._count, self._min, self._max = counts, count, lo, hi

    def observe(self, x: ArrayLike) -> Histogram:
        """Add the values of ``x`` (any shape, real floats) and return ``self``."""
        data = c_contiguous(as_float32(x, "x"))
        lo, hi = observed_range(data)
        with self._lock:
            new_lo, new_hi = min(self._min, lo), max(self._max, hi)
            grid = self._grid(new_lo, new_hi)
            counts = self._coarsened(*grid)
            _core.histogram_add(data, counts, math.ldexp(1.0, -grid[0]), float(grid[1]))
            self._commit(counts, grid, self._count + data.size, new_lo, new_hi)
        return self

    def merge(self, other: Histogram) -> Histogram:
        """Add the counts of ``other`` (same ``max_bins``) and return ``self``."""
        if not isinstance(other, Histogram):
            raise TypeError(f"other: expected a Histogram, got {type(other).__name__}")
        if other._max_bins != self._max_bins:
            raise ValueError(
                f"other: expected a histogram with max_bins={self._max_bins}, "
                f"got max_bins={other._max_bins}"
            )
        snapshot = Histogram.from_state(other.to_state())
        if snapshot._count == 0:
            return self
        with self._lock:
            lo, hi = min(self._min, snapshot._min), max(self._max, snapshot._max)
            grid = self._grid(lo, hi)
            counts = self._coarsened(*grid) + snapshot._coarsened(*grid)
            self._commit(counts, grid, self._count + snapshot._count, lo, hi)
        return self

    def to_state(self) -> dict[str, Any]:
        """Plain numbers and one int64 array: enough to rebuild or sum across processes."""
        with self._lock:
            return {
                "format": _STATE_FORMAT,
                "max_bins": self._max_bins,
                "count": self._count,
                "min": self._min,
                "max": self._max,
                "exponent": self._exponent,
                "offset": self._offset,
                "counts": self._counts.copy(),
            }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Histogram:
        """Rebuild a histogram from ``to_state()``; inconsistent states raise ``ValueError``."""
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict from Histogram.to_state(), got {state!r}")
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(
                f"state: expected format {_STATE_FORMAT!r}, got {state.get('format')!r}"
            )
        try:
            hist = cls(state["max_bins"])
            count = check_int(state["count"], "state['count']")
            counts = np.asarray(state["counts"])
            lo, hi = float(state["min"]), float(state["max"])
            exponent = check_int(state["exponent"], "state['exponent']")
            offset = check_int(state["offset"], "state['offset']")
        except KeyError as missing:
            raise ValueError(f"state: missing key {missing}") from None
        if counts.dtype.kind not in "iu" or counts.ndim != 1 or (counts < 0).any():
            raise ValueError("state['counts']: expected a 1-d array of non-negative integers")
        if count == 0:
            if counts.size or not (lo == math.inf and hi == -math.inf):
                raise ValueError(
                    "state: an empty histogram must have no counts and min=inf, max=-inf"
                )
            return hist
        grid = hist._grid(lo, hi) if math.isfinite(lo) and math.isfinite(hi) and lo <= hi else None
        if (
            grid != (exponent, offset, counts.size)
            or int(counts.sum()) != count
            or counts[0] == 0
            or counts[-1] == 0
        ):
            raise ValueError(
                "state: counts, exponent and offset do not match count, min and max "
                "(not a state written by Histogram.to_state)"
            )
        hist._commit(counts.astype(np.int64), grid, count, lo, hi)
        return hist
