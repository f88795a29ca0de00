"""The fake-quantization modules, which own the learned clips and weight scales."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import qatcore
from qatcore import quantizers, weight_quantizer
from qatcore.config import RetrainDataConfig, RetrainWeightConfig

from ._checkpoint import CheckedState, tensor_entry, to_numpy_state, to_torch_state
from ._distributed import gather_calibration
from ._functions import arq_fake_quant, ulq_fake_quant, ulq_weight_fake_quant


class ActivationFakeQuant(CheckedState):
    """Input activations: IFMR calibration over the first ``batch_num`` training
    batches (which pass through in float), then ULQ with learnable clips.

    The clips are ``nn.Parameter``s from construction (so an optimizer made right
    after ``prepare_qat`` trains them) and are the only copy of them: calibration
    (``self.calibrator``, a ``qatcore.Calibrator``) fills them once and then only
    records that it is done and whether the lower clip is fixed at 0. Under
    ``torch.distributed`` the ranks' histograms are merged before IFMR runs, so
    every rank starts from the same clips.
    """

    _state_names = ("clip_min", "clip_max", "_extra_state")

    def __init__(self, data_config: RetrainDataConfig, *, layer_name: str = "") -> None:
        super().__init__()
        self.calibrator = qatcore.Calibrator(data_config)
        self.layer_name = layer_name  # for error messages
        self.clip_min = nn.Parameter(torch.tensor(0.0))
        self.clip_max = nn.Parameter(torch.tensor(1.0))

    @property
    def calibrated(self) -> bool:
        return self.calibrator.calibrated

    @property
    def fixed_min(self) -> bool:
        return self.calibrator.fixed_min

    @property
    def num_bits(self) -> int:
        return self.calibrator.num_bits

    def not_calibrated(self, call: str) -> RuntimeError:
        """The error for ``call`` on a layer that has not finished calibrating."""
        where = f"layer {self.layer_name!r}" if self.layer_name else "ActivationFakeQuant"
        n = self.calibrator.config.batch_num
        return RuntimeError(
            f"{call}: {where} is not calibrated; run the first batch_num={n} batches through "
            f"the model in train() mode first ({self.calibrator.batches_observed} so far)"
        )

    def params(self) -> qatcore.QuantParams:
        """The scale and zero point that the current clips give."""
        if not self.calibrated:
            raise self.not_calibrated("params")
        return qatcore.ulq_params(
            self.clip_min.item(),
            self.clip_max.item(),
            fixed_min=self.fixed_min,
            num_bits=self.num_bits,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cal = self.calibrator
        if not cal.calibrated:
            if not self.training:
                raise self.not_calibrated("forward in eval() mode")
            cal.observe(x.detach().to("cpu", torch.float32).numpy())
            if cal.batches_observed == cal.config.batch_num:
                self.calibrate()
            # Float pass-through that still reaches the clips with a zero gradient, so
            # that DistributedDataParallel sees every parameter used in every step.
            return x + 0.0 * (self.clip_min + self.clip_max)
        return ulq_fake_quant(
            x, self.clip_min, self.clip_max, fixed_min=cal.fixed_min, num_bits=cal.num_bits
        )

    def calibrate(self) -> None:
        """Run IFMR now (normally automatic after ``batch_num`` batches)."""
        gather_calibration(self.calibrator)
        found = self.calibrator.calibrate()
        with torch.no_grad():
            self.clip_min.fill_(found.clip_min)
            self.clip_max.fill_(found.clip_max)

    def get_extra_state(self) -> Any:
        return to_torch_state(self.calibrator.state_dict())

    def check_entries(self, state_dict: dict[str, Any], prefix: str) -> qatcore.Calibrator | None:
        """Check this module's checkpoint entries (keys under ``prefix``) without loading
        them: a bad one raises ``ValueError`` naming its key. Returns the calibrator the
        saved state describes (None when the checkpoint has none)."""
        for name in ("clip_min", "clip_max"):
            value = tensor_entry(state_dict, prefix + name, getattr(self, name).shape)
            if value is not None:
                quantizers.saved_clip(value, prefix + name)
        key = prefix + "_extra_state"
        if key not in state_dict:
            return None
        validated = qatcore.Calibrator(self.calibrator.config)
        validated.load_state_dict(to_numpy_state(state_dict[key]), path=key)
        return validated

    def set_extra_state(self, state: Any) -> None:
        validated = self.__dict__.pop("_checked", None)
        if validated is None:
            validated = qatcore.Calibrator(self.calibrator.config)
            validated.load_state_dict(to_numpy_state(state), path="extra_state")
        self.calibrator = validated

    def extra_repr(self) -> str:
        cal = self.calibrator
        if not cal.calibrated:
            return f"calibrating ({cal.batches_observed}/{cal.config.batch_num})"
        return f"clip_min={self.clip_min.item():.4g}, clip_max={self.clip_max.item():.4g}"


class WeightFakeQuant(CheckedState):
    """Weights through ARQ or ULQ, as the layer's ``WeightScheme`` decides.

    Under ULQ the symmetric ``scale`` is an ``nn.Parameter`` (one per channel along the
    scheme's ``axis``, or one per tensor) that starts from the weights' ARQ scale at the
    first forward; the zero point is always 0. A scale that the optimizer pushed below
    ``scheme.min_scale`` counts as it (SPEC "Weight ULQ"): a train() forward raises the
    parameter in place, an eval() forward leaves it. A non-finite one is a ``ValueError``.
    """

    scale: nn.Parameter
    initialized: torch.Tensor
    _state_names = ("scale",)

    def __init__(self, weight_config: RetrainWeightConfig, channels: int, *, axis: int = 0) -> None:
        super().__init__()
        self.scheme = qatcore.WeightScheme(weight_config, axis)
        if self.scheme.learns_scale:
            self.scale = nn.Parameter(torch.ones(self.scheme.scale_shape(channels)))
            self.register_buffer("initialized", torch.tensor(False))

    @property
    def num_bits(self) -> int:
        return self.scheme.num_bits

    def _usable_scale(self) -> torch.Tensor:
        """The scale this forward uses: at least ``scheme.min_scale``. In train() mode a
        scale the optimizer pushed lower is raised in place (projected), so the parameter
        is what the step used; in eval() mode the module's state is left as it is."""
        scale, scheme = self.scale, self.scheme
        values = scale.detach().cpu().float().numpy()  # the parameter's memory on CPU
        if not scheme.below_min_scale(values, "weight_quant.scale", " (did training diverge?)"):
            return scale
        if self.training:
            with torch.no_grad():
                scale.clamp_(min=scheme.min_scale)
            return scale
        return scale.clamp(min=scheme.min_scale)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scheme = self.scheme
        if not scheme.learns_scale:
            return arq_fake_quant(
                w, channel_wise=scheme.config.channel_wise, axis=scheme.axis, num_bits=self.num_bits
            )
        if not bool(self.initialized):  # the scale starts as the weights' ARQ scale
            s = scheme.initial_scale(w.detach().to("cpu", torch.float32).numpy())
            with torch.no_grad():
                self.scale.copy_(torch.from_numpy(s).reshape(self.scale.shape))
                self.initialized.fill_(True)
        scale = self._usable_scale()
        return ulq_weight_fake_quant(w, scale, num_bits=self.num_bits, axis=scheme.scale_axis)

    def params(self, w: torch.Tensor) -> qatcore.QuantParams:
        """The scale and zero point (always 0) the weights are quantized with now."""
        scale = self.scale.detach().cpu().numpy() if self.scheme.learns_scale else None
        return self.scheme.params(w.detach().cpu().float().numpy(), scale)

    def check_entries(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Check this module's checkpoint entries without loading them (``ValueError``
        naming the key)."""
        if not self.scheme.learns_scale:
            return
        key = prefix + "scale"
        value = tensor_entry(state_dict, key, self.scale.shape)
        channels = self.scale.shape[0] if self.scale.ndim else None
        weight_quantizer.saved_scale(self.scheme, value, key, channels)
