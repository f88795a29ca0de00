"""Framework-agnostic quantizers: the configuration turned into training steps.

NumPy in and out. A framework adapter (``qatcore.torch``) wraps these objects;
they hold the state (calibration, learned clips) and call the kernels through
the public functions of this package.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import F32, as_float32, check_int, check_num_bits
from .arq import arq, arq_params
from .config import RetrainDataConfig, RetrainWeightConfig
from .fake_quant import QuantParams
from .histogram import Histogram, observed_range
from .ifmr import IfmrResult, ifmr
from .ulq import UlqGrads, ulq_backward, ulq_forward, ulq_params

__all__ = ["ActivationQuantizer", "QuantizationWarning", "WeightGrads", "WeightQuantizer"]

#: The seed's recommended range for a configured clip: [0.3, 1.7] x the observed extreme.
RECOMMENDED_RANGE = (0.3, 1.7)


class QuantizationWarning(UserWarning):
    """A setting that works but that the seed advises against."""


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    return v


class ActivationQuantizer:
    """ULQ on activations, its clips initialised by IFMR over the first batches.

    ``observe(x)`` on each of the first ``batch_num`` batches, ``calibrate()``,
    then ``forward(x)`` / ``backward(grad, x)`` at every step, with the training
    loop updating ``clip_min``/``clip_max`` from the returned gradients.
    """

    def __init__(self, data_config: RetrainDataConfig | None = None, *, num_bits: int = 8) -> None:
        config = RetrainDataConfig() if data_config is None else data_config
        if not isinstance(config, RetrainDataConfig):
            raise TypeError(f"data_config: expected a RetrainDataConfig, got {config!r}")
        self.config = config
        self.num_bits = check_num_bits(num_bits)
        self._batches = 0
        self._observed: tuple[float, float] | None = None
        # Data is needed unless both bounds are known without it.
        needs_data = config.clip_max is None or (
            config.clip_min is None and config.fixed_min is not True
        )
        self._histogram: Histogram | None = Histogram() if needs_data else None
        self._calibrated = False
        self._fixed_min = False
        self._clip_min = 0.0
        self._clip_max = 0.0
        self._warned = False
        self.last_ifmr: IfmrResult | None = None

    # ---- calibration ---------------------------------------------------------------

    @property
    def batches_observed(self) -> int:
        return self._batches

    @property
    def calibrated(self) -> bool:
        return self._calibrated

    def observe(self, x: ArrayLike) -> ActivationQuantizer:
        """Feed one calibration batch (at most ``batch_num`` of them)."""
        if self._calibrated:
            raise RuntimeError("observe: calibration is finished; use forward(x)")
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

    def merge(self, other: ActivationQuantizer) -> ActivationQuantizer:
        """Add the calibration data another quantizer of the same configuration observed
        (another process's, say): histograms merge exactly, so merging the ranks' quantizers
        and calibrating equals calibrating on the union of their batches."""
        if not isinstance(other, ActivationQuantizer):
            raise TypeError(f"other: expected an ActivationQuantizer, got {type(other).__name__}")
        if other.config != self.config or other.num_bits != self.num_bits:
            raise ValueError("other: expected a quantizer with the same configuration and num_bits")
        if self._calibrated or other._calibrated:
            raise RuntimeError("merge: both quantizers must still be calibrating")
        if self._histogram is not None and other._histogram is not None:
            self._histogram.merge(other._histogram)
        if other._observed is not None:
            self._widen(*other._observed)
        return self

    def calibrate(self) -> ActivationQuantizer:
        """Resolve ``fixed_min`` and fill the clips that the configuration leaves out."""
        if self._calibrated:
            return self
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
        self.last_ifmr = None
        if clip_max is None or clip_min is None:
            assert self._histogram is not None
            found = ifmr(self._histogram, num_bits=self.num_bits, fixed_min=fixed)
            self.last_ifmr = found  # for plots; not part of the state
            clip_max = found.clip_max if clip_max is None else clip_max
            clip_min = found.clip_min if clip_min is None else clip_min
        self._warn_outside_recommended()
        self._fixed_min, self._clip_min, self._clip_max = fixed, clip_min, clip_max
        self._histogram = None
        self._calibrated = True
        return self

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
            low, high = sorted((a * extreme, b * extreme))
            if not low <= value <= high:
                warnings.warn(
                    f"{name}={value!r} lies outside the recommended range [{low:.6g}, {high:.6g}] "
                    f"({a} to {b} x the observed {'max' if name == 'clip_max' else 'min'} "
                    f"{extreme:.6g})",
                    QuantizationWarning,
                    stacklevel=3,
                )
                self._warned = True
                return

    # ---- training ------------------------------------------------------------------

    def _require_calibrated(self, what: str) -> None:
        if not self._calibrated:
            raise RuntimeError(
                f"{what}: the quantizer is not calibrated; call observe(x) on the first "
                f"batch_num={self.config.batch_num} batches, then calibrate()"
            )

    @property
    def fixed_min(self) -> bool:
        self._require_calibrated("fixed_min")
        return self._fixed_min

    @property
    def clip_min(self) -> float:
        self._require_calibrated("clip_min")
        return self._clip_min

    @clip_min.setter
    def clip_min(self, value: float) -> None:
        self._require_calibrated("clip_min")
        self._clip_min = _finite(value, "clip_min")

    @property
    def clip_max(self) -> float:
        self._require_calibrated("clip_max")
        return self._clip_max

    @clip_max.setter
    def clip_max(self, value: float) -> None:
        self._require_calibrated("clip_max")
        self._clip_max = _finite(value, "clip_max")

    @property
    def params(self) -> QuantParams:
        """The scale and zero point that the current clips give."""
        self._require_calibrated("params")
        return ulq_params(
            self._clip_min, self._clip_max, fixed_min=self._fixed_min, num_bits=self.num_bits
        )

    def forward(self, x: ArrayLike, out: NDArray[np.float32] | None = None) -> F32:
        self._require_calibrated("forward")
        return ulq_forward(
            x,
            self._clip_min,
            self._clip_max,
            fixed_min=self._fixed_min,
            num_bits=self.num_bits,
            out=out,
        ).output

    def backward(
        self, grad: ArrayLike, x: ArrayLike, out: NDArray[np.float32] | None = None
    ) -> UlqGrads:
        self._require_calibrated("backward")
        return ulq_backward(
            grad,
            x,
            self._clip_min,
            self._clip_max,
            fixed_min=self._fixed_min,
            num_bits=self.num_bits,
            out=out,
        )

    # ---- state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: plain numbers, the histogram's state while calibrating."""
        return {
            "batches_observed": self._batches,
            "observed": None if self._observed is None else list(self._observed),
            "calibrated": self._calibrated,
            "fixed_min": self._fixed_min,
            "clip_min": self._clip_min,
            "clip_max": self._clip_max,
            "warned": self._warned,
            "histogram": None if self._histogram is None else self._histogram.to_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            batches = check_int(state["batches_observed"], "state['batches_observed']")
            observed = state["observed"]
            histogram = state["histogram"]
            calibrated = bool(state["calibrated"])
            clips = (
                _finite(state["clip_min"], "state['clip_min']"),
                _finite(state["clip_max"], "state['clip_max']"),
            )
            fixed, warned = bool(state["fixed_min"]), bool(state["warned"])
        except KeyError as missing:
            raise ValueError(f"state: missing key {missing}") from None
        if not 0 <= batches <= self.config.batch_num:
            raise ValueError(
                f"state['batches_observed']: expected 0..{self.config.batch_num}, got {batches}"
            )
        hist = None if histogram is None else Histogram.from_state(histogram)
        if not calibrated and (hist is None) != (self._histogram is None):
            raise ValueError("state['histogram']: does not match this quantizer's configuration")
        self._batches = batches
        self._observed = None if observed is None else (float(observed[0]), float(observed[1]))
        self._calibrated, self._fixed_min, self._warned = calibrated, fixed, warned
        self._clip_min, self._clip_max = clips
        self._histogram = None if calibrated else hist


@dataclass(frozen=True, eq=False)
class WeightGrads:
    """``grad_weight``; for ULQ also the clips' gradients (None under ARQ)."""

    grad_weight: F32
    grad_clip_min: F32 | None
    grad_clip_max: F32 | None


class WeightQuantizer:
    """Weights through ARQ (``arq_retrain``) or ULQ (``ulq_quantize``), per ``channel_wise``.

    ARQ recomputes its scales from the weights at every forward; its backward is
    the straight-through estimator. ULQ's clips start from the weights' ARQ range
    at the first forward and are learned afterwards.
    """

    def __init__(
        self, weight_config: RetrainWeightConfig | None = None, *, axis: int = 0, num_bits: int = 8
    ) -> None:
        config = RetrainWeightConfig() if weight_config is None else weight_config
        if not isinstance(config, RetrainWeightConfig):
            raise TypeError(f"weight_config: expected a RetrainWeightConfig, got {config!r}")
        self.config = config
        self.axis = check_int(axis, "axis")
        self.num_bits = check_num_bits(num_bits)
        self._clip_min: F32 | None = None
        self._clip_max: F32 | None = None

    @property
    def algorithm(self) -> str:
        return self.config.weights_retrain_algo

    def _ulq_axis(self) -> int | None:
        return self.axis if self.config.channel_wise else None

    def initialize(self, w: ArrayLike) -> None:
        """ULQ: set the clips to the ARQ range of ``w`` ([s * qmin, s * qmax] per channel)."""
        p = arq_params(
            w, channel_wise=self.config.channel_wise, axis=self.axis, num_bits=self.num_bits
        )
        # np.asarray: a 0-d scale times a scalar is a NumPy scalar, not an array.
        self._clip_max = np.asarray(p.scale * np.float32(p.qmax), dtype=np.float32)
        self._clip_min = np.asarray(p.scale * np.float32(p.qmin), dtype=np.float32)

    @property
    def clip_min(self) -> F32 | None:
        return None if self._clip_min is None else self._clip_min.copy()

    @clip_min.setter
    def clip_min(self, value: ArrayLike) -> None:
        self._clip_min = self._checked_clip(value, "clip_min")

    @property
    def clip_max(self) -> F32 | None:
        return None if self._clip_max is None else self._clip_max.copy()

    @clip_max.setter
    def clip_max(self, value: ArrayLike) -> None:
        self._clip_max = self._checked_clip(value, "clip_max")

    def _checked_clip(self, value: ArrayLike, name: str) -> F32:
        if self.algorithm != "ulq_quantize":
            raise RuntimeError(f"{name}: ARQ has no clips (weights_retrain_algo='arq_retrain')")
        if self._clip_max is None:
            raise RuntimeError(f"{name}: not initialised; call initialize(w) or forward(w) first")
        arr = as_float32(value, name)
        if arr.shape != self._clip_max.shape:
            raise ValueError(f"{name}: expected shape {self._clip_max.shape}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: expected finite values")
        return arr.astype(np.float32, copy=True)

    def forward(self, w: ArrayLike, out: NDArray[np.float32] | None = None) -> F32:
        if self.algorithm == "arq_retrain":
            return arq(
                w,
                channel_wise=self.config.channel_wise,
                axis=self.axis,
                num_bits=self.num_bits,
                out=out,
            ).output
        if self._clip_max is None:
            self.initialize(w)
        assert self._clip_min is not None and self._clip_max is not None
        return ulq_forward(
            w,
            self._clip_min,
            self._clip_max,
            num_bits=self.num_bits,
            axis=self._ulq_axis(),
            out=out,
        ).output

    def backward(
        self, grad: ArrayLike, w: ArrayLike, out: NDArray[np.float32] | None = None
    ) -> WeightGrads:
        if self.algorithm == "arq_retrain":  # straight-through: the scales get no gradient
            g = as_float32(grad, "grad")
            if np.shape(w) != g.shape:
                raise ValueError(f"grad: expected the shape of w {np.shape(w)}, got {g.shape}")
            if out is not None:
                np.copyto(out, g)
                g = out
            return WeightGrads(g, None, None)
        if self._clip_max is None:
            raise RuntimeError("backward: call forward(w) first (it initialises the clips)")
        assert self._clip_min is not None
        r = ulq_backward(
            grad,
            w,
            self._clip_min,
            self._clip_max,
            num_bits=self.num_bits,
            axis=self._ulq_axis(),
            out=out,
        )
        return WeightGrads(r.grad_input, r.grad_clip_min, r.grad_clip_max)

    def state_dict(self) -> dict[str, Any]:
        return {
            "clip_min": None if self._clip_min is None else self._clip_min.tolist(),
            "clip_max": None if self._clip_max is None else self._clip_max.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            lo, hi = state["clip_min"], state["clip_max"]
        except KeyError as missing:
            raise ValueError(f"state: missing key {missing}") from None
        if (lo is None) != (hi is None):
            raise ValueError("state: clip_min and clip_max must both be set or both be None")
        if lo is not None and self.algorithm != "ulq_quantize":
            raise ValueError("state: clips given for an ARQ quantizer")
        if lo is None:
            self._clip_min = self._clip_max = None
            return
        lo_a, hi_a = as_float32(lo, "state['clip_min']"), as_float32(hi, "state['clip_max']")
        if lo_a.shape != hi_a.shape or not (np.isfinite(lo_a).all() and np.isfinite(hi_a).all()):
            raise ValueError("state: clip_min and clip_max must be finite and of one shape")
        self._clip_min, self._clip_max = lo_a.astype(np.float32), hi_a.astype(np.float32)
