"""Framework-agnostic weight quantization: the weight configuration turned into training
steps.

NumPy in and out. ``WeightScheme`` decides which weight algorithm applies and runs its
steps given the scale; ``WeightQuantizer`` is a scheme plus, under ULQ, the learned
weight scale. ``qatcore.torch`` uses the same ``WeightScheme`` with the scale as an
``nn.Parameter``, so every piece of state has one owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import F32, as_float32, check_native_int
from .arq import arq, arq_params
from .config import RetrainWeightConfig
from .fake_quant import EPS, QuantParams
from .ulq import ulq_weight_backward, ulq_weight_forward

__all__ = ["WeightGrads", "WeightQuantizer", "WeightScheme", "saved_scale"]


def saved_scale(scheme: WeightScheme, value: object, path: str, channels: int | None) -> F32 | None:
    """A saved learned weight scale checked against ``scheme`` (one value per channel along
    its axis when ``channel_wise``, else a scalar), as the float32 array a step uses; None
    stays None. ``channels``: the layer's channel count (None: not known, and then a
    per-channel scale cannot be checked). A bad value raises ``ValueError`` naming
    ``path``. Every front end checks its saved scales with it."""
    if value is None:
        return None
    if not scheme.learns_scale:
        raise ValueError(f"{path}: a scale given for an ARQ quantizer (expected None)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected numbers, got {value!r}") from None
    want_ndim = 1 if scheme.config.channel_wise else 0
    if arr.ndim != want_ndim:
        raise ValueError(
            f"{path}: expected {'one value per channel' if want_ndim else 'a scalar'} "
            f"(channel_wise={scheme.config.channel_wise}), got shape {arr.shape}"
        )
    if want_ndim:
        if channels is None:
            raise ValueError(
                f"{path}: cannot check a per-channel scale against weights this quantizer "
                "has not seen; pass channels= to WeightQuantizer or initialize(w) first"
            )
        if arr.shape != (channels,):
            raise ValueError(
                f"{path}: expected {(channels,)} (this layer's channels), got shape {arr.shape}"
            )
    with np.errstate(over="ignore"):
        return scheme.usable_scale(arr.astype(np.float32), path)


@dataclass(frozen=True, eq=False)
class WeightGrads:
    """``grad_weight``; under ULQ also the scale's gradient (None under ARQ)."""

    grad_weight: F32
    grad_scale: F32 | None


@dataclass(frozen=True)
class WeightScheme:
    """Which weight algorithm applies to a layer, and its steps given the scale.

    The one place that reads ``weights_retrain_algo`` and ``channel_wise``: ARQ
    (``arq_retrain``) recomputes symmetric scales from the weights at every forward and
    has no state; ULQ (``ulq_quantize``) learns the symmetric ``scale`` itself (SPEC
    "Weight ULQ": a float32 array, 0-d per tensor or one entry per channel along
    ``axis``, zero point always 0) starting from the weights' ARQ scale. The scheme
    holds no scale: its caller does. Every step uses ``usable_scale(scale)``: a scale
    the optimizer pushed below ``min_scale`` (zero and negative ones included) counts
    as ``min_scale``, a non-finite one is a ``ValueError`` (``below_min_scale``, the
    rule every front end applies).
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
    def learns_scale(self) -> bool:
        return self.algorithm == "ulq_quantize"  # the config reads AMCT's ulq_retrain as it

    @property
    def scale_axis(self) -> int | None:
        """The axis the scale runs along (None: one scale for the whole tensor)."""
        return self.axis if self.config.channel_wise else None

    def scale_shape(self, channels: int) -> tuple[int, ...]:
        return (channels,) if self.config.channel_wise else ()

    @property
    def min_scale(self) -> float:
        """The smallest scale a step uses (SPEC "Weight ULQ"): EPS, ARQ's own floor."""
        return float(EPS)

    def below_min_scale(
        self, scale: NDArray[np.floating[Any]], name: str = "scale", hint: str = ""
    ) -> bool:
        """Whether some value of ``scale`` lies below ``min_scale`` (zero and negative ones
        included); such values count as ``min_scale``, so the caller raises them to it.
        NaN or infinity is a ``ValueError`` naming ``name`` (``hint`` appended)."""
        if not np.isfinite(scale).all():
            raise ValueError(f"{name}: expected finite values, got {scale.tolist()}{hint}")
        return bool((scale < self.min_scale).any())

    def usable_scale(self, scale: ArrayLike, name: str = "scale") -> F32:
        """``scale`` as the float32 array a step uses (a new one): values below
        ``min_scale`` raised to it; NaN or infinity is a ``ValueError`` naming ``name``."""
        arr = as_float32(scale, name)
        self.below_min_scale(arr, name)
        return np.maximum(arr, np.float32(self.min_scale))

    def initial_scale(self, w: ArrayLike) -> F32:
        """ULQ's starting scale: the ARQ scale of ``w`` (0-d per tensor, else one per channel)."""
        return np.array(
            arq_params(
                w, channel_wise=self.config.channel_wise, axis=self.axis, num_bits=self.num_bits
            ).scale
        )

    def _need_scale(self, scale: ArrayLike | None, what: str) -> F32:
        if scale is None:
            raise RuntimeError(f"{what}: ULQ weights need their scale (initial_scale(w))")
        return self.usable_scale(scale)

    def params(self, w: ArrayLike, scale: ArrayLike | None = None) -> QuantParams:
        """The scale and zero point (0) the weights are quantized with."""
        if not self.learns_scale:
            return arq_params(
                w, channel_wise=self.config.channel_wise, axis=self.axis, num_bits=self.num_bits
            )
        s = self._need_scale(scale, "params")
        axis = self.scale_axis
        if axis is not None:
            axis %= max(1, np.ndim(w))
        return QuantParams(s, np.zeros(s.shape, np.int32), self.num_bits, axis)

    def forward(
        self,
        w: ArrayLike,
        scale: ArrayLike | None = None,
        out: NDArray[np.float32] | None = None,
    ) -> F32:
        if not self.learns_scale:
            return arq(
                w,
                channel_wise=self.config.channel_wise,
                axis=self.axis,
                num_bits=self.num_bits,
                out=out,
            ).output
        s = self._need_scale(scale, "forward")
        return ulq_weight_forward(
            w, s, num_bits=self.num_bits, axis=self.scale_axis, out=out
        ).output

    def backward(
        self,
        grad: ArrayLike,
        w: ArrayLike,
        scale: ArrayLike | None = None,
        out: NDArray[np.float32] | None = None,
    ) -> WeightGrads:
        if not self.learns_scale:  # straight-through: the scales get no gradient
            g = as_float32(grad, "grad")
            if np.shape(w) != g.shape:
                raise ValueError(f"grad: expected the shape of w {np.shape(w)}, got {g.shape}")
            if out is not None:
                np.copyto(out, g)
                g = out
            return WeightGrads(g, None)
        s = self._need_scale(scale, "backward")
        r = ulq_weight_backward(grad, w, s, num_bits=self.num_bits, axis=self.scale_axis, out=out)
        return WeightGrads(r.grad_weight, r.grad_scale)


class WeightQuantizer:
    """Weights through ARQ (``arq_retrain``) or ULQ (``ulq_quantize``), per ``channel_wise``.

    A ``WeightScheme`` (``self.scheme``) plus, under ULQ, the learnable symmetric scale:
    it starts from the weights' ARQ scale at the first forward (or ``initialize(w)``)
    and is learned afterwards; values set below ``scheme.min_scale`` are stored as it.
    ARQ's backward is the straight-through estimator.
    """

    def __init__(
        self,
        weight_config: RetrainWeightConfig | None = None,
        *,
        axis: int = 0,
        channels: int | None = None,
    ) -> None:
        config = RetrainWeightConfig() if weight_config is None else weight_config
        self.scheme = WeightScheme(config, axis)
        # The weights' size along axis, when known before the first forward: a loaded
        # per-channel scale is checked against it at load, not at the next forward.
        self.channels = None if channels is None else check_native_int(channels, "channels")
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"channels: expected an integer >= 1, got {self.channels}")
        self._scale: F32 | None = None

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
        """ULQ: set the scale to the ARQ scale of ``w`` (per channel, or per tensor)."""
        shape = np.shape(w)
        if self.channels is not None and (
            len(shape) <= self.axis or shape[self.axis] != self.channels
        ):
            raise ValueError(
                f"w: expected {self.channels} channels along axis {self.axis} "
                f"(channels={self.channels}), got shape {shape}"
            )
        self._scale = self.scheme.initial_scale(w)

    @property
    def scale(self) -> F32 | None:
        return None if self._scale is None else self._scale.copy()

    @scale.setter
    def scale(self, value: ArrayLike) -> None:
        if not self.scheme.learns_scale:
            raise RuntimeError(
                "scale: ARQ has no learned scale (weights_retrain_algo='arq_retrain')"
            )
        if self._scale is None:
            raise RuntimeError("scale: not initialised; call initialize(w) or forward(w) first")
        arr = as_float32(value, "scale")
        if arr.shape != self._scale.shape:
            raise ValueError(f"scale: expected shape {self._scale.shape}, got {arr.shape}")
        self._scale = self.scheme.usable_scale(arr)

    def forward(self, w: ArrayLike, out: NDArray[np.float32] | None = None) -> F32:
        if self.scheme.learns_scale and self._scale is None:
            self.initialize(w)
        return self.scheme.forward(w, self._scale, out)

    def backward(
        self, grad: ArrayLike, w: ArrayLike, out: NDArray[np.float32] | None = None
    ) -> WeightGrads:
        if self.scheme.learns_scale and self._scale is None:
            raise RuntimeError("backward: call forward(w) first (it initialises the scale)")
        return self.scheme.backward(grad, w, self._scale, out)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": None if self._scale is None else self._scale.tolist()}

    def load_state_dict(self, state: Any, *, path: str = "state") -> None:
        """Restore ``state_dict()``; a bad entry raises ``ValueError`` naming its path, and
        nothing changes. The scale must have the shape of this quantizer's (one per
        channel along ``axis`` when ``channel_wise``, else a scalar)."""
        if not isinstance(state, dict) or set(state) != {"scale"}:
            raise ValueError(
                f"{path}: expected a dict with the key scale, "
                f"got {sorted(state) if isinstance(state, dict) else type(state).__name__}"
            )
        known = self.channels if self._scale is None else self._scale.size
        self._scale = saved_scale(self.scheme, state["scale"], f"{path}['scale']", known)
