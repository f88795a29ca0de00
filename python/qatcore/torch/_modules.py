"""Quantization-aware layers, model preparation and INT8 export for PyTorch."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import qatcore
from qatcore.config import (
    ConfigError,
    LayerConfig,
    RetrainConfig,
    RetrainDataConfig,
    RetrainWeightConfig,
)

from ._functions import arq_fake_quant, ulq_fake_quant


def _to_torch_state(state: Any) -> Any:
    """NumPy arrays as tensors, so checkpoints load with torch.load(weights_only=True)."""
    if isinstance(state, dict):
        return {k: _to_torch_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return torch.from_numpy(state.copy())
    return state


def _to_numpy_state(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _to_numpy_state(v) for k, v in state.items()}
    if isinstance(state, torch.Tensor):
        return state.numpy().copy()
    return state


class ActivationFakeQuant(nn.Module):
    """Input activations: IFMR calibration over the first ``batch_num`` training
    batches (which pass through in float), then ULQ with learnable clips.

    ``clip_min``/``clip_max`` are ``nn.Parameter``s from construction (so an
    optimizer made right after ``prepare_qat`` trains them); calibration fills
    them. Under ``torch.distributed`` the ranks' histograms are merged before
    IFMR runs, so every rank starts from the same clips.
    """

    def __init__(self, data_config: RetrainDataConfig, *, num_bits: int = 8) -> None:
        super().__init__()
        self.quantizer = qatcore.ActivationQuantizer(data_config, num_bits=num_bits)
        self.clip_min = nn.Parameter(torch.tensor(0.0))
        self.clip_max = nn.Parameter(torch.tensor(1.0))

    @property
    def calibrated(self) -> bool:
        return self.quantizer.calibrated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quantizer
        if not q.calibrated:
            if not self.training:
                raise RuntimeError(
                    "ActivationFakeQuant: not calibrated; run the first "
                    f"batch_num={q.config.batch_num} batches in train() mode first"
                )
            q.observe(x.detach().to("cpu", torch.float32).numpy())
            if q.batches_observed == q.config.batch_num:
                self.calibrate()
            # Float pass-through that still reaches the clips with a zero gradient, so
            # that DistributedDataParallel sees every parameter used in every step.
            return x + 0.0 * (self.clip_min + self.clip_max)
        return ulq_fake_quant(
            x, self.clip_min, self.clip_max, fixed_min=q.fixed_min, num_bits=q.num_bits
        )

    def calibrate(self) -> None:
        """Run IFMR now (normally automatic after ``batch_num`` batches)."""
        q = self.quantizer
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Histogram merges are exact and order-independent, so every rank that adds
            # the others' observations to its own holds the same histogram afterwards.
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, q.state_dict())
            for rank, state in enumerate(states):
                if rank != dist.get_rank():
                    other = qatcore.ActivationQuantizer(q.config, num_bits=q.num_bits)
                    other.load_state_dict(state)
                    q.merge(other)
        q.calibrate()
        with torch.no_grad():
            self.clip_min.fill_(q.clip_min)
            self.clip_max.fill_(q.clip_max)

    def get_extra_state(self) -> Any:
        return _to_torch_state(self.quantizer.state_dict())

    def set_extra_state(self, state: Any) -> None:
        self.quantizer.load_state_dict(_to_numpy_state(state))

    def extra_repr(self) -> str:
        if not self.calibrated:
            return (
                f"calibrating ({self.quantizer.batches_observed}/{self.quantizer.config.batch_num})"
            )
        return f"clip_min={self.clip_min.item():.4g}, clip_max={self.clip_max.item():.4g}"


class WeightFakeQuant(nn.Module):
    """Weights through ARQ or ULQ per the layer's ``retrain_weight_config``."""

    clip_min: nn.Parameter
    clip_max: nn.Parameter
    initialized: torch.Tensor

    def __init__(
        self, weight_config: RetrainWeightConfig, channels: int, *, axis: int = 0, num_bits: int = 8
    ) -> None:
        super().__init__()
        self.config = weight_config
        self.axis = axis
        self.num_bits = num_bits
        self.quantizer = qatcore.WeightQuantizer(weight_config, axis=axis, num_bits=num_bits)
        if weight_config.weights_retrain_algo == "ulq_quantize":
            shape = (channels,) if weight_config.channel_wise else ()
            self.clip_min = nn.Parameter(torch.zeros(shape))
            self.clip_max = nn.Parameter(torch.ones(shape))
            self.register_buffer("initialized", torch.tensor(False))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.weights_retrain_algo == "arq_retrain":
            return arq_fake_quant(
                w, channel_wise=cfg.channel_wise, axis=self.axis, num_bits=self.num_bits
            )
        if not bool(self.initialized):  # clips start from the weights' ARQ range
            self.quantizer.initialize(w.detach().to("cpu", torch.float32).numpy())
            with torch.no_grad():
                self.clip_min.copy_(
                    torch.from_numpy(self.quantizer.clip_min).reshape(self.clip_min.shape)
                )
                self.clip_max.copy_(
                    torch.from_numpy(self.quantizer.clip_max).reshape(self.clip_max.shape)
                )
                self.initialized.fill_(True)
        return ulq_fake_quant(
            w,
            self.clip_min,
            self.clip_max,
            num_bits=self.num_bits,
            axis=self.axis if cfg.channel_wise else None,
        )

    def params(self, w: torch.Tensor) -> qatcore.QuantParams:
        """The scale and zero point the weights are quantized with now."""
        cfg = self.config
        if cfg.weights_retrain_algo == "arq_retrain":
            return qatcore.arq_params(
                w.detach().cpu().float().numpy(),
                channel_wise=cfg.channel_wise,
                axis=self.axis,
                num_bits=self.num_bits,
            )
        return qatcore.ulq_params(
            self.clip_min.detach().cpu().numpy(),
            self.clip_max.detach().cpu().numpy(),
            num_bits=self.num_bits,
            axis=self.axis if cfg.channel_wise else None,
        )


class _QuantMixin:
    """Shared by the quantized layers: an activation and a weight fake-quantizer."""

    act_quant: ActivationFakeQuant
    weight_quant: WeightFakeQuant
    layer_config: LayerConfig

    def _attach(self, layer: LayerConfig, out_channels: int) -> None:
        self.layer_config = layer
        self.act_quant = ActivationFakeQuant(
            layer.retrain_data_config, num_bits=layer.retrain_data_config.num_bits
        )
        self.weight_quant = WeightFakeQuant(
            layer.retrain_weight_config, out_channels, num_bits=layer.retrain_weight_config.num_bits
        )


class QuantLinear(nn.Linear, _QuantMixin):
    """``nn.Linear`` with quantized input activations and weights."""

    @classmethod
    def from_float(cls, mod: nn.Linear, layer: LayerConfig) -> QuantLinear:
        new = cls(
            mod.in_features,
            mod.out_features,
            bias=mod.bias is not None,
            device=mod.weight.device,
            dtype=mod.weight.dtype,
        )
        new.weight, new.bias = mod.weight, mod.bias
        new._attach(layer, mod.out_features)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quant(x), self.weight_quant(self.weight), self.bias)


def _conv_from_float(cls: type[Any], mod: nn.Module, layer: LayerConfig) -> Any:
    new = cls(
        mod.in_channels,
        mod.out_channels,
        mod.kernel_size,
        stride=mod.stride,
        padding=mod.padding,
        dilation=mod.dilation,
        groups=mod.groups,
        bias=mod.bias is not None,
        padding_mode=mod.padding_mode,
        device=mod.weight.device,
        dtype=mod.weight.dtype,
    )
    new.weight, new.bias = mod.weight, mod.bias
    new._attach(layer, mod.out_channels)
    return new


class QuantConv1d(nn.Conv1d, _QuantMixin):
    """``nn.Conv1d`` with quantized input activations and weights (per output channel)."""

    @classmethod
    def from_float(cls, mod: nn.Conv1d, layer: LayerConfig) -> QuantConv1d:
        return _conv_from_float(cls, mod, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quant(x), self.weight_quant(self.weight), self.bias)


class QuantConv2d(nn.Conv2d, _QuantMixin):
    """``nn.Conv2d`` with quantized input activations and weights (per output channel)."""

    @classmethod
    def from_float(cls, mod: nn.Conv2d, layer: LayerConfig) -> QuantConv2d:
        return _conv_from_float(cls, mod, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quant(x), self.weight_quant(self.weight), self.bias)


QUANTIZED: dict[type[nn.Module], Any] = {
    nn.Linear: QuantLinear,
    nn.Conv1d: QuantConv1d,
    nn.Conv2d: QuantConv2d,
}
QUANT_LAYERS = (QuantLinear, QuantConv1d, QuantConv2d)


def prepare_qat(
    model: nn.Module, config: RetrainConfig | None = None, *, inplace: bool = False
) -> nn.Module:
    """Replace every Conv1d, Conv2d and Linear that ``config`` enables by its quantized twin.

    Layer names are those of ``model.named_modules()``. A name in ``config.layers``
    that is not such a layer of the model is a ``ConfigError``; ``retrain_enable=False``
    leaves a layer float. Returns the prepared model (a copy unless ``inplace``).
    """
    config = RetrainConfig() if config is None else config
    if not isinstance(config, RetrainConfig):
        raise TypeError(f"config: expected a RetrainConfig, got {type(config).__name__}")
    modules = dict(model.named_modules())
    for name in config.layers:
        if name not in modules:
            near = [n for n in modules if n and type(modules[n]) in QUANTIZED]
            raise ConfigError(
                f"layers.{name}",
                f"no layer of that name in the model "
                f"(quantizable layers: {', '.join(near) or 'none'})",
            )
        if type(modules[name]) not in QUANTIZED:
            raise ConfigError(
                f"layers.{name}",
                f"is a {type(modules[name]).__name__}; only "
                "Conv1d, Conv2d and Linear layers are quantized",
            )
    model = model if inplace else copy.deepcopy(model)
    for name, mod in list(model.named_modules()):
        layer = config.for_layer(name)
        if name and type(mod) in QUANTIZED and layer.retrain_enable:
            model.set_submodule(name, QUANTIZED[type(mod)].from_float(mod, layer))
    return model


def quantized_layers(model: nn.Module) -> dict[str, Any]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QUANT_LAYERS)}


def export_int8(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per quantized layer: int8 weights, their scales and zero points (per output channel
    or per tensor), the input activation's scale and zero point, and the float bias."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in quantized_layers(model).items():
        act = m.act_quant
        if not act.calibrated:
            raise RuntimeError(f"export_int8: layer {name!r} is not calibrated yet")
        w = m.weight.detach().cpu().float().numpy()
        wp = m.weight_quant.params(m.weight)
        ap = qatcore.ulq_params(
            act.clip_min.item(),
            act.clip_max.item(),
            fixed_min=act.quantizer.fixed_min,
            num_bits=act.quantizer.num_bits,
        )
        out[name] = {
            "weight_int8": qatcore.quantize(w, wp),
            "weight_scale": wp.scale,
            "weight_zero_point": wp.zero_point,
            "weight_axis": wp.axis,
            "act_scale": float(ap.scale),
            "act_zero_point": int(ap.zero_point),
            "act_clip_min": act.clip_min.item(),
            "act_clip_max": act.clip_max.item(),
            "bias": None if m.bias is None else m.bias.detach().cpu().float().numpy(),
        }
    return out
