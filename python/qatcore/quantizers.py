"""Framework-agnostic activation quantization: the data configuration turned into
training steps.

NumPy in and out. ``ActivationQuantizer`` is a ``Calibrator`` plus the clips it
starts, which the caller then trains (the weights' counterpart is
``qatcore.weight_quantizer``). ``qatcore.torch`` uses the same ``Calibrator`` with the
clips as ``nn.Parameter``s, so every piece of state has one owner.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import F32
from .calibration import Calibrator
from .config import RetrainDataConfig
from .fake_quant import QuantParams
from .ifmr import IfmrResult
from .ulq import (
    UlqGrads,
    ulq_backward,
    ulq_forward,
    ulq_params,
)

__all__ = ["ActivationQuantizer", "saved_clip"]


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
            clips = tuple(saved_clip(state[k], f"{path}[{k!r}]") for k in ("clip_min", "clip_max"))
        elif state["clip_min"] is not None or state["clip_max"] is not None:
            raise ValueError(f"{path}: expected no clips before calibration")
        self.calibrator, self._clips = probe, clips  # type: ignore[assignment]


def saved_clip(value: object, path: str) -> float:
    """A saved activation clip (a number, or a 0-d array of one) as a float: a value that is
    not a finite number raises ``ValueError`` naming ``path``. Every front end checks its
    saved clips with it."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    try:
        return _finite(value, path)
    except TypeError as e:
        raise ValueError(str(e)) from None
