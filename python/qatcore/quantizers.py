"""Framework-agnostic quantizers: the configuration turned into training steps.

NumPy in and out. ``ActivationQuantizer`` is a ``Calibrator`` plus the clips it
starts, which the caller then trains; ``WeightQuantizer`` is a ``WeightScheme``
(which weight algorithm applies, and its steps given the clips) plus, under ULQ,
the clips. ``qatcore.torch`` uses the same ``Calibrator`` and ``WeightScheme`` with
the clips as ``nn.Parameter``s, so every piece of state has one owner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import F32, as_float32, check_native_int
from .arq import arq, arq_params
from .calibration import Calibrator
from .config import RetrainDataConfig, RetrainWeightConfig
from .fake_quant import QuantParams
from .ifmr import IfmrResult
from .ulq import UlqGrads, ulq_backward, ulq_forward, ulq_params

__all__ = ["ActivationQuantizer", "WeightGrads", "WeightQuantizer", "WeightScheme"]


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
    loop updating ``clip_min``/``clip_max`` from the returned gradients. The
    calibration lives in ``self.calibrator``; the clips live here.
    """

    def __init__(self, data_config: RetrainDataConfig | None = None) -> None:
        self.calibrator = Calibrator(data_config)
        self._clips: tuple[float, float] | None = None  # (clip_min, clip_max) once calibrated

    @property
    def config(self) -> RetrainDataConfig:
        return self.calibrator.config

    @property
    def num_bits(self) -> int:
        return self.calibrator.num_bits

    # ---- calibration ---------------------------------------------------------------

    @property
    def batches_observed(self) -> int:
        return self.calibrator.batches_observed

    @property
    def calibrated(self) -> bool:
        return self.calibrator.calibrated

    @property
    def last_ifmr(self) -> IfmrResult | None:
        """The IFMR search of the last ``calibrate()`` (for plots; not saved)."""
        return self.calibrator.last_ifmr

    def observe(self, x: ArrayLike) -> ActivationQuantizer:
        """Feed one calibration batch (at most ``batch_num`` of them)."""
        self.calibrator.observe(x)
        return self

    def merge(self, other: ActivationQuantizer) -> ActivationQuantizer:
        """Add the calibration data another quantizer of the same configuration observed
        (another process's, say): histograms merge exactly, so merging the ranks' quantizers
        and calibrating equals calibrating on the union of their batches."""
        if not isinstance(other, ActivationQuantizer):
            raise TypeError(f"other: expected an ActivationQuantizer, got {type(other).__name__}")
        self.calibrator.merge(other.calibrator)
        return self

    def calibrate(self) -> ActivationQuantizer:
        """Resolve ``fixed_min`` and fill the clips that the configuration leaves out."""
        if not self.calibrated:
            found = self.calibrator.calibrate()
            self._clips = (found.clip_min, found.clip_max)
        return self

    # ---- training ------------------------------------------------------------------

    def _current(self, what: str) -> tuple[float, float]:
        if self._clips is None:
            raise RuntimeError(
                f"{what}: the quantizer is not calibrated; call observe(x) on the first "
                f"batch_num={self.config.batch_num} batches, then calibrate()"
            )
        return self._clips

    @property
    def fixed_min(self) -> bool:
        self._current("fixed_min")
        return self.calibrator.fixed_min

    @property
    def clip_min(self) -> float:
        return self._current("clip_min")[0]

    @clip_min.setter
    def clip_min(self, value: float) -> None:
        self._clips = (_finite(value, "clip_min"), self._current("clip_min")[1])

    @property
    def clip_max(self) -> float:
        return self._current("clip_max")[1]

    @clip_max.setter
    def clip_max(self, value: float) -> None:
        self._clips = (self._current("clip_max")[0], _finite(value, "clip_max"))

    @property
    def params(self) -> QuantParams:
        """The scale and zero point that the current clips give."""
        lo, hi = self._current("params")
        return ulq_params(lo, hi, fixed_min=self.calibrator.fixed_min, num_bits=self.num_bits)

    def forward(self, x: ArrayLike, out: NDArray[np.float32] | None = None) -> F32:
        lo, hi = self._current("forward")
        return ulq_forward(
            x, lo, hi, fixed_min=self.calibrator.fixed_min, num_bits=self.num_bits, out=out
        ).output

    def backward(
        self, grad: ArrayLike, x: ArrayLike, out: NDArray[np.float32] | None = None
    ) -> UlqGrads:
        lo, hi = self._current("backward")
        return ulq_backward(
            grad, x, lo, hi, fixed_min=self.calibrator.fixed_min, num_bits=self.num_bits, out=out
        )

    # ---- state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The calibrator's state, and the clips once calibrated (None before)."""
        clips = self._clips
        return {
            "calibration": self.calibrator.state_dict(),
            "clip_min": None if clips is None else clips[0],
            "clip_max": None if clips is None else clips[1],
        }

    def load_state_dict(self, state: Any, *, path: str = "state") -> None:
        """Restore ``state_dict()``; a bad entry raises ``ValueError`` naming its path, and
        nothing changes."""
        if not isinstance(state, dict) or set(state) != {"calibration", "clip_min", "clip_max"}:
            raise ValueError(
                f"{path}: expected a dict with the keys calibration, clip_min, clip_max, "
                f"got {sorted(state) if isinstance(state, dict) else type(state).__name__}"
            )
        probe = Calibrator(self.config)
        probe.load_state_dict(state["calibration"], path=f"{path}['calibration']")
        clips = None
        if probe.calibrated:
            clips = tuple(_state_clip(state[k], f"{path}[{k!r}]") for k in ("clip_min", "clip_max"))
        elif state["clip_min"] is not None or state["clip_max"] is not None:
            raise ValueError(f"{path}: expected no clips before calibration")
        self.calibrator, self._clips = probe, clips  # type: ignore[assignment]


def _state_clip(value: object, path: str) -> float:
    try:
        return _finite(value, path)
    except TypeError as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True, eq=False)
class WeightGrads:
    """``grad_weight``; for ULQ also the clips' gradients (None under ARQ)."""

    grad_weight: F32
    grad_clip_min: F32 | None
    grad_clip_max: F32 | None


@dataclass(frozen=True)
class WeightScheme:
    """Which weight algorithm applies to a layer, and its steps given the clips.

    The one place that reads ``weights_retrain_algo`` and ``channel_wise``: ARQ
    (``arq_retrain``) recomputes symmetric scales from the weights at every forward and
    has no state; ULQ (``ulq_quantize``) learns ``clips``, a ``(clip_min, clip_max)``
    pair of float32 arrays (0-d per tensor, one entry per channel along ``axis``) that
    start from the weights' ARQ range. The scheme holds no clips: its caller does.
    """

    config: RetrainWeightConfig
    axis: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.config, RetrainWeightConfig):
            raise TypeError(f"weight_config: expected a RetrainWeightConfig, got {self.config!r}")
        object.__setattr__(self, "axis", check_native_int(self.axis, "axis"))

    @property
    def algorithm(self) -> str:
        return self.config.weights_retrain_algo

    @property
    def num_bits(self) -> int:
        return self.config.num_bits

    @property
    def learns_clips(self) -> bool:
        return self.algorithm == "ulq_quantize"

    @property
    def clip_axis(self) -> int | None:
        """The axis the clips run along (None: one pair for the whole tensor)."""
        return self.axis if self.config.channel_wise else None

    def clip_shape(self, channels: int) -> tuple[int, ...]:
        return (channels,) if self.config.channel_wise else ()

    def initial_clips(self, w: ArrayLike) -> tuple[F32, F32]:
        """ULQ's starting clips: the ARQ range ``[s * qmin, s * qmax]`` of ``w``."""
        p = arq_params(
            w, channel_wise=self.config.channel_wise, axis=self.axis, num_bits=self.num_bits
        )
        # np.asarray: a 0-d scale times a scalar is a NumPy scalar, not an array.
        return (
            np.asarray(p.scale * np.float32(p.qmin), dtype=np.float32),
            np.asarray(p.scale * np.float32(p.qmax), dtype=np.float32),
        )

    def _need_clips(self, clips: tuple[F32, F32] | None, what: str) -> tuple[F32, F32]:
        if clips is None:
            raise RuntimeError(f"{what}: ULQ weights need their clips (initial_clips(w))")
        return clips

    def params(self, w: ArrayLike, clips: tuple[F32, F32] | None = None) -> QuantParams:
        """The scale and zero point the weights are quantized with."""
        if not self.learns_clips:
            return arq_params(
                w, channel_wise=self.config.channel_wise, axis=self.axis, num_bits=self.num_bits
            )
        lo, hi = self._need_clips(clips, "params")
        return ulq_params(lo, hi, num_bits=self.num_bits, axis=self.clip_axis)

    def forward(
        self,
        w: ArrayLike,
        clips: tuple[F32, F32] | None = None,
        out: NDArray[np.float32] | None = None,
    ) -> F32:
        if not self.learns_clips:
            return arq(
                w,
                channel_wise=self.config.channel_wise,
                axis=self.axis,
                num_bits=self.num_bits,
                out=out,
            ).output
        lo, hi = self._need_clips(clips, "forward")
        return ulq_forward(w, lo, hi, num_bits=self.num_bits, axis=self.clip_axis, out=out).output

    def backward(
        self,
        grad: ArrayLike,
        w: ArrayLike,
        clips: tuple[F32, F32] | None = None,
        out: NDArray[np.float32] | None = None,
    ) -> WeightGrads:
        if not self.learns_clips:  # straight-through: the scales get no gradient
            g = as_float32(grad, "grad")
            if np.shape(w) != g.shape:
                raise ValueError(f"grad: expected the shape of w {np.shape(w)}, got {g.shape}")
            if out is not None:
                np.copyto(out, g)
                g = out
            return WeightGrads(g, None, None)
        lo, hi = self._need_clips(clips, "backward")
        r = ulq_backward(grad, w, lo, hi, num_bits=self.num_bits, axis=self.clip_axis, out=out)
        return WeightGrads(r.grad_input, r.grad_clip_min, r.grad_clip_max)


class WeightQuantizer:
    """Weights through ARQ (``arq_retrain``) or ULQ (``ulq_quantize``), per ``channel_wise``.

    A ``WeightScheme`` (``self.scheme``) plus, under ULQ, the clips: they start from
    the weights' ARQ range at the first forward (or ``initialize(w)``) and are learned
    afterwards. ARQ's backward is the straight-through estimator.
    """

    def __init__(self, weight_config: RetrainWeightConfig | None = None, *, axis: int = 0) -> None:
        config = RetrainWeightConfig() if weight_config is None else weight_config
        self.scheme = WeightScheme(config, axis)
        self._clips: tuple[F32, F32] | None = None

    @property
    def config(self) -> RetrainWeightConfig:
        return self.scheme.config

    @property
    def axis(self) -> int:
        return self.scheme.axis

    @property
    def num_bits(self) -> int:
        return self.scheme.num_bits

    @property
    def algorithm(self) -> str:
        return self.scheme.algorithm

    def initialize(self, w: ArrayLike) -> None:
        """ULQ: set the clips to the ARQ range of ``w`` ([s * qmin, s * qmax] per channel)."""
        self._clips = self.scheme.initial_clips(w)

    @property
    def clip_min(self) -> F32 | None:
        return None if self._clips is None else self._clips[0].copy()

    @clip_min.setter
    def clip_min(self, value: ArrayLike) -> None:
        self._clips = (self._checked_clip(value, "clip_min"), self._initialized("clip_min")[1])

    @property
    def clip_max(self) -> F32 | None:
        return None if self._clips is None else self._clips[1].copy()

    @clip_max.setter
    def clip_max(self, value: ArrayLike) -> None:
        self._clips = (self._initialized("clip_max")[0], self._checked_clip(value, "clip_max"))

    def _initialized(self, name: str) -> tuple[F32, F32]:
        if not self.scheme.learns_clips:
            raise RuntimeError(f"{name}: ARQ has no clips (weights_retrain_algo='arq_retrain')")
        if self._clips is None:
            raise RuntimeError(f"{name}: not initialised; call initialize(w) or forward(w) first")
        return self._clips

    def _checked_clip(self, value: ArrayLike, name: str) -> F32:
        shape = self._initialized(name)[0].shape
        arr = as_float32(value, name)
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: expected finite values")
        return arr.astype(np.float32, copy=True)

    def forward(self, w: ArrayLike, out: NDArray[np.float32] | None = None) -> F32:
        if self.scheme.learns_clips and self._clips is None:
            self.initialize(w)
        return self.scheme.forward(w, self._clips, out)

    def backward(
        self, grad: ArrayLike, w: ArrayLike, out: NDArray[np.float32] | None = None
    ) -> WeightGrads:
        if self.scheme.learns_clips and self._clips is None:
            raise RuntimeError("backward: call forward(w) first (it initialises the clips)")
        return self.scheme.backward(grad, w, self._clips, out)

    def state_dict(self) -> dict[str, Any]:
        clips = self._clips
        return {
            "clip_min": None if clips is None else clips[0].tolist(),
            "clip_max": None if clips is None else clips[1].tolist(),
        }

    def load_state_dict(self, state: Any, *, path: str = "state") -> None:
        """Restore ``state_dict()``; a bad entry raises ``ValueError`` naming its path, and
        nothing changes. Clips must have the shape of this quantizer's (one per channel
        along ``axis`` when ``channel_wise``, else a scalar)."""
        if not isinstance(state, dict) or set(state) != {"clip_min", "clip_max"}:
            raise ValueError(
                f"{path}: expected a dict with the keys clip_min, clip_max, "
                f"got {sorted(state) if isinstance(state, dict) else type(state).__name__}"
            )
        lo, hi = state["clip_min"], state["clip_max"]
        if lo is None and hi is None:
            self._clips = None
            return
        if not self.scheme.learns_clips:
            raise ValueError(f"{path}: clips given for an ARQ quantizer (expected None)")
        arrays = []
        for key, value in (("clip_min", lo), ("clip_max", hi)):
            where = f"{path}[{key!r}]"
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: expected numbers, got {value!r}") from None
            want_ndim = 1 if self.config.channel_wise else 0
            if arr.ndim != want_ndim:
                raise ValueError(
                    f"{where}: expected {'one value per channel' if want_ndim else 'a scalar'} "
                    f"(channel_wise={self.config.channel_wise}), got shape {arr.shape}"
                )
            if self._clips is not None and arr.shape != self._clips[0].shape:
                raise ValueError(
                    f"{where}: expected {self._clips[0].shape} (this layer's channels), "
                    f"got shape {arr.shape}"
                )
            if not np.isfinite(arr).all():
                raise ValueError(f"{where}: expected finite values")
            arrays.append(arr.astype(np.float32))
        if arrays[0].shape != arrays[1].shape:
            raise ValueError(f"{path}: clip_min and clip_max have different shapes")
        self._clips = (arrays[0], arrays[1])
