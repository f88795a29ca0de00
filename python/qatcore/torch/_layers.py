"""The quantized layers: each float layer's subclass with an activation and a weight
fake-quantizer, and the one registry of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qatcore.config import ConfigError, LayerConfig, RetrainConfig

from ._checkpoint import check_before_loading
from ._fake_quant import ActivationFakeQuant, WeightFakeQuant

__all__ = [
    "QUANTIZED",
    "Conv1dQAT",
    "Conv2dQAT",
    "Conv3dQAT",
    "ConvTranspose2dQAT",
    "LinearQAT",
]


def _layer_config(config: Any, layer_type: str) -> LayerConfig:
    """A single-op layer's ``config=``: None (the defaults), a ``LayerConfig``, or the
    seed's dict (``retrain_enable``, ``retrain_data_config``, ``retrain_weight_config``),
    which is what AMCT's ``Conv2dQAT(config=...)`` takes."""
    if config is None:
        return LayerConfig()
    if isinstance(config, LayerConfig):
        return config
    if isinstance(config, Mapping):
        allowed = ("retrain_enable", "retrain_data_config", "retrain_weight_config")
        unknown = [k for k in config if k not in allowed]
        if unknown:
            raise ConfigError(
                str(unknown[0]),
                f"unknown key of a {layer_type} layer's config (allowed: {', '.join(allowed)})",
            )
        return RetrainConfig.from_dict(config).defaults
    raise TypeError(
        f"config: expected None, a dict in the seed's layout or a LayerConfig, "
        f"got {type(config).__name__}"
    )


class _QuantMixin:
    """Shared by the quantized layers: an activation and a weight fake-quantizer.

    Each quantized layer is its float layer's subclass, made from the float layer's
    constructor arguments plus ``config=`` (what AMCT's single-op layers take), or by
    ``from_float(module, config=None)``; ``prepare_qat`` inserts the same classes.
    With ``retrain_enable`` false the layer computes in float.
    """

    act_quant: ActivationFakeQuant
    weight_quant: WeightFakeQuant
    layer_config: LayerConfig
    #: The float layer this one quantizes.
    _float_type: type[nn.Module]
    #: The constructor arguments that ``from_float`` copies from the float layer.
    _float_args: tuple[str, ...]
    #: The weight axis of the output channels (1 for transposed convolutions).
    _weight_axis = 0

    def _attach(self, config: Any) -> None:
        layer = _layer_config(config, self._float_type.__name__)
        self.layer_config = layer
        self.act_quant = ActivationFakeQuant(layer.retrain_data_config)
        axis = self._weight_axis
        float_layer: Any = self  # the float layer this class is mixed into
        channels = float_layer.weight.shape[axis]
        self.weight_quant = WeightFakeQuant(layer.retrain_weight_config, channels, axis=axis)
        device = float_layer.weight.device  # the quantizers' state lives beside it
        self.act_quant.to(device)
        self.weight_quant.to(device)
        # The layer's own weight loads before its quantizers are reached: check them first.
        float_layer.register_load_state_dict_pre_hook(check_before_loading)

    def _quantized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input and the weight the float computation takes."""
        weight = self.weight  # type: ignore[attr-defined]
        if not self.layer_config.retrain_enable:
            return x, weight
        return self.act_quant(x), self.weight_quant(weight)

    @classmethod
    def from_float(cls, mod: nn.Module, config: Any = None) -> Any:
        """The quantized twin of ``mod`` (its weight and bias, not copies) with ``config``
        (as the constructor takes it)."""
        if type(mod) is not cls._float_type:
            raise TypeError(f"mod: expected a {cls._float_type.__name__}, got {type(mod).__name__}")
        args = {name: getattr(mod, name) for name in cls._float_args}
        make: Any = cls
        new = make(
            **args,
            bias=mod.bias is not None,
            device=mod.weight.device,
            dtype=mod.weight.dtype,
            config=config,
        )
        new.weight, new.bias = mod.weight, mod.bias
        return new


_CONV_ARGS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
)


class LinearQAT(nn.Linear, _QuantMixin):
    """``nn.Linear`` with quantized input activations and weights (AMCT's ``LinearQAT``)."""

    _float_type = nn.Linear
    _float_args = ("in_features", "out_features")

    def __init__(self, *args: Any, config: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._attach(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(*self._quantized(x), self.bias)


class _ConvQAT(_QuantMixin):
    _float_args = _CONV_ARGS

    def __init__(self, *args: Any, config: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._attach(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(*self._quantized(x), self.bias)  # type: ignore[attr-defined]


class Conv1dQAT(_ConvQAT, nn.Conv1d):
    """``nn.Conv1d`` with quantized input activations and weights (per output channel)."""

    _float_type = nn.Conv1d


class Conv2dQAT(_ConvQAT, nn.Conv2d):
    """``nn.Conv2d`` with quantized input activations and weights (per output channel)."""

    _float_type = nn.Conv2d


class Conv3dQAT(_ConvQAT, nn.Conv3d):
    """``nn.Conv3d`` with quantized input activations and weights (per output channel)."""

    _float_type = nn.Conv3d


class ConvTranspose2dQAT(nn.ConvTranspose2d, _QuantMixin):
    """``nn.ConvTranspose2d`` with quantized input activations and weights. Its weight is
    (in, out / groups, kH, kW): the per-channel scales run along axis 1."""

    _float_type = nn.ConvTranspose2d
    _float_args = (*_CONV_ARGS, "output_padding")
    _weight_axis = 1

    def __init__(self, *args: Any, config: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._attach(config)
        w = self.layer_config.retrain_weight_config
        if self.groups > 1 and w.channel_wise and self.layer_config.retrain_enable:
            # Axis 1 holds out / groups entries: one scale would serve an output channel
            # of every group, which is not "per output channel".
            raise ConfigError(
                "retrain_weight_config.channel_wise",
                f"a ConvTranspose2d with groups={self.groups} has no per-output-channel weight "
                "axis (its weight is (in, out / groups, kH, kW)); set channel_wise false",
            )

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        geometry: Any = self  # torch's annotations of these attributes are narrower
        output_padding = geometry._output_padding(
            x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        x, w = self._quantized(x)
        return F.conv_transpose2d(
            x,
            w,
            self.bias,
            self.stride,
            geometry.padding,
            output_padding,
            self.groups,
            self.dilation,
        )


#: The one registry of quantizable layers: float type -> its quantized twin.
QUANTIZED: dict[type[nn.Module], Any] = {
    nn.Linear: LinearQAT,
    nn.Conv1d: Conv1dQAT,
    nn.Conv2d: Conv2dQAT,
    nn.Conv3d: Conv3dQAT,
    nn.ConvTranspose2d: ConvTranspose2dQAT,
}
