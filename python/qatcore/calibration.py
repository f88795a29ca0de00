"""Calibration of an activation's clips: IFMR over the first ``batch_num`` batches.

A ``Calibrator`` owns everything calibration needs and decides (the batches seen,
the observed range, the histogram, whether the lower clip is fixed at 0) and
nothing it does not: the clips it computes are handed to the caller, which owns
them from then on (``ActivationQuantizer`` for NumPy, ``nn.Parameter``s in
``qatcore.torch``). Its state therefore never holds a clip that training has
since moved.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._arrays import as_float32
from .config import QuantizationWarning, RetrainDataConfig
from .histogram import Histogram, observed_range
from .ifmr import IfmrResult, ifmr

__all__ = ["Calibration", "Calibrator"]

#: The seed's recommended range for a configured clip: [0.3, 1.7] x the observed extreme.
RECOMMENDED_RANGE = (0.3, 1.7)

_STATE_KEYS = ("batches_observed", "observed", "calibrated", "fixed_min", "warned", "histogram")


@dataclass(frozen=True)
class Calibration:
    """What calibration decided: the lower-clip rule and the clips training starts from.

    ``ifmr`` is the clip search when one ran (for plots); it is not part of any state.
    """

    fixed_min: bool
    clip_min: float
    clip_max: float
    ifmr: IfmrResult | None


def _state_bool(value: object, path: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{path}: expected True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _state_int(value: object, path: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{path}: expected an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _state_range(value: object, path: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected None or [min, max], got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{path}: expected finite values with min <= max, got [{lo!r}, {hi!r}]")
    return lo, hi


class Calibrator:
    """IFMR calibration of one activation's clips (seed table 2, ``retrain_data_config``).

    ``observe(x)`` on each of the first ``batch_num`` batches (``merge`` adds another
    process's observations), then ``calibrate()`` resolves ``fixed_min`` and returns
    the starting clips: IFMR in histogram mode fills the bounds the configuration
    leaves out. A ``Histogram`` is kept only when some bound needs data. The bit
    width is the configuration's ``dst_type``.
    """

    def __init__(self, data_config: RetrainDataConfig | None = None) -> None:
        config = RetrainDataConfig() if data_config is None else data_config
        if not isinstance(config, RetrainDataConfig):
            raise TypeError(f"data_config: expected a RetrainDataConfig, got {config!r}")
        self.config = config
        self._batches = 0
        self._observed: tuple[float, float] | None = None
        self._histogram: Histogram | None = Histogram() if self.needs_data else None
        self._fixed_min: bool | None = None  # set by calibration
        self._warned = False
        self.last_ifmr: IfmrResult | None = None

    @property
    def num_bits(self) -> int:
        """The activation's bit width (``dst_type``)."""
        return self.config.num_bits

    @property
    def needs_data(self) -> bool:
        """Whether some bound is left to IFMR (else the configuration alone decides)."""
        cfg = self.config
        return cfg.clip_max is None or (cfg.clip_min is None and cfg.fixed_min is not True)

    @property
    def batches_observed(self) -> int:
        return self._batches

    @property
    def calibrated(self) -> bool:
        return self._fixed_min is not None

    @property
    def fixed_min(self) -> bool:
        """Whether the lower clip is fixed at 0 (decided by calibration)."""
        if self._fixed_min is None:
            raise RuntimeError(
                f"fixed_min: not calibrated; observe(x) the first "
                f"batch_num={self.config.batch_num} batches, then calibrate()"
            )
        return self._fixed_min

    def observe(self, x: ArrayLike) -> Calibrator:
        """Feed one calibration batch (at most ``batch_num`` of them)."""
        if self.calibrated:
            raise RuntimeError("observe: calibration is finished")
        if self._batches >= self.config.batch_num:
            raise RuntimeError(
                f"observe: already observed batch_num={self.config.batch_num} batches; "
                "call calibrate()"
            )
        data = as_float32(x, "x")
        if self._histogram is not None:  # one read: its exact min/max are the observed range
            self._histogram.observe(data)
            self._widen(self._histogram.min, self._histogram.max)
        else:
            self._widen(*observed_range(data))
        self._batches += 1
        return self

    def _widen(self, lo: float, hi: float) -> None:
        old = self._observed
        self._observed = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))

    def merge(self, other: Calibrator) -> Calibrator:
        """Add the observations of another calibrator of the same configuration (another
        process's, say): histograms merge exactly, so merging the ranks' calibrators and
        calibrating equals calibrating on the union of their batches."""
        if not isinstance(other, Calibrator):
            raise TypeError(f"other: expected a Calibrator, got {type(other).__name__}")
        if other.config != self.config:
            raise ValueError("other: expected a calibrator with the same configuration")
        if self.calibrated or other.calibrated:
            raise RuntimeError("merge: both calibrators must still be calibrating")
        if self._histogram is not None and other._histogram is not None:
            self._histogram.merge(other._histogram)
        if other._observed is not None:
            self._widen(*other._observed)
        return self

    def merge_gathered(self, states: Sequence[Any], rank: int) -> Calibrator:
        """Add the ranks' calibration states, gathered by a collective (``states[r]`` is rank
        ``r``'s ``state_dict()``), except ``states[rank]``, this calibrator's own. When every
        rank does so, each holds the union of all ranks' observations, the same on every
        rank (merges are exact and order-independent), and calibrates as one calibrator
        over all the batches would. A bad state raises ``ValueError`` naming its rank, and
        nothing changes."""
        others = []
        for r, state in enumerate(states):
            if r != rank:
                other = Calibrator(self.config)
                other.load_state_dict(state, path=f"rank {r}'s calibration state")
                others.append(other)
        for other in others:
            self.merge(other)
        return self

    def calibrate(self) -> Calibration:
        """Resolve ``fixed_min`` and compute the starting clips (once)."""
        if self.calibrated:
            raise RuntimeError("calibrate: already calibrated")
        cfg = self.config
        if self._batches == 0 and self._histogram is not None:
            raise RuntimeError(
                f"calibrate: observe(x) the first batch_num={cfg.batch_num} batches first"
            )
        fixed = cfg.fixed_min
        if fixed is None:  # decided from the data: a ReLU output has no negative values
            fixed = cfg.clip_min is None and self._observed is not None and self._observed[0] >= 0
        clip_max, clip_min = cfg.clip_max, cfg.clip_min
        if fixed:
            clip_min = 0.0
        found = None
        if clip_max is None or clip_min is None:
            assert self._histogram is not None
            found = ifmr(self._histogram, num_bits=self.num_bits, fixed_min=fixed)
            clip_max = found.clip_max if clip_max is None else clip_max
            clip_min = found.clip_min if clip_min is None else clip_min
        self._warn_outside_recommended()
        self._fixed_min = fixed
        self._histogram = None
        self.last_ifmr = found
        return Calibration(fixed, clip_min, clip_max, found)

    def _warn_outside_recommended(self) -> None:
        if self._observed is None or self._warned:
            return
        lo, hi = self._observed
        a, b = RECOMMENDED_RANGE
        for name, value, extreme in (
            ("clip_max", self.config.clip_max, hi),
            ("clip_min", self.config.clip_min, lo),
        ):
            if value is None or extreme == 0 or (extreme < 0) != (value < 0):
                continue
            if name == "clip_min" and self.config.fixed_min is True:
                continue  # not used: fixed_min=true fixes the lower clip at 0
            low, high = sorted((a * extreme, b * extreme))
            if not low <= value <= high:
                warnings.warn(
                    f"{name}={value!r} lies outside the recommended range [{low:.6g}, {high:.6g}] "
                    f"({a} to {b} x the observed {'max' if name == 'clip_max' else 'min'} "
                    f"{extreme:.6g})",
                    QuantizationWarning,
                    stacklevel=4,
                )
                self._warned = True
                return

    # ---- state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the calibration progress (the histogram's state while calibrating)
        and, once calibrated, the lower-clip rule. No clips: their owner saves them."""
        return {
            "batches_observed": self._batches,
            "observed": None if self._observed is None else list(self._observed),
            "calibrated": self.calibrated,
            "fixed_min": self._fixed_min,
            "warned": self._warned,
            "histogram": None if self._histogram is None else self._histogram.to_state(),
        }

    def load_state_dict(self, state: Any, *, path: str = "state") -> None:
        """Restore ``state_dict()``. Every entry is checked first; a bad one raises
        ``ValueError`` naming its path, and nothing changes."""
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a dict, got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        unknown = [k for k in state if k not in _STATE_KEYS]
        if missing or unknown:
            raise ValueError(
                f"{path}: expected the keys {', '.join(_STATE_KEYS)}; "
                f"missing {missing or 'none'}, unknown {unknown or 'none'} "
                "(a checkpoint of another qatcore version?)"
            )
        batches = _state_int(state["batches_observed"], f"{path}['batches_observed']")
        if not 0 <= batches <= self.config.batch_num:
            raise ValueError(
                f"{path}['batches_observed']: expected 0..{self.config.batch_num} "
                f"(batch_num), got {batches}"
            )
        observed = _state_range(state["observed"], f"{path}['observed']")
        if (observed is None) != (batches == 0):
            raise ValueError(
                f"{path}['observed']: expected a range exactly when batches were observed "
                f"(batches_observed={batches}), got {state['observed']!r}"
            )
        calibrated = _state_bool(state["calibrated"], f"{path}['calibrated']")
        fixed = state["fixed_min"]
        if calibrated:
            fixed = _state_bool(fixed, f"{path}['fixed_min']")
        elif fixed is not None:
            raise ValueError(
                f"{path}['fixed_min']: expected None before calibration, got {fixed!r}"
            )
        warned = _state_bool(state["warned"], f"{path}['warned']")
        hist = None
        if state["histogram"] is not None:
            try:
                hist = Histogram.from_state(state["histogram"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}['histogram']: {e}") from None
        if (hist is not None) != (self.needs_data and not calibrated):
            raise ValueError(
                f"{path}['histogram']: expected "
                f"{'a histogram' if self.needs_data and not calibrated else 'None'} for this "
                "configuration and calibration stage"
            )
        self._batches, self._observed, self._histogram = batches, observed, hist
        self._fixed_min, self._warned = fixed, warned
        self.last_ifmr = None
