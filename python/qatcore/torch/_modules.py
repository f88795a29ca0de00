"""Quantization-aware layers, model preparation and INT8 export for PyTorch."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
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
    QuantizationWarning,
    RetrainConfig,
    RetrainDataConfig,
    RetrainWeightConfig,
)

from ._functions import arq_fake_quant, ulq_fake_quant, ulq_weight_fake_quant


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


def _check_clip_entries(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    names: tuple[str, ...] = ("clip_min", "clip_max"),
) -> None:
    """Refuse non-finite clips (or scales), or ones of another shape, before anything is
    loaded."""
    for name in names:
        key = prefix + name
        value = state_dict.get(key)
        if value is None:
            continue
        want = getattr(module, name).shape
        if not isinstance(value, torch.Tensor) or value.shape != want:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{key}: expected a tensor of shape {tuple(want)}, got {got}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{key}: expected finite values, got {value.tolist()}")


class ActivationFakeQuant(nn.Module):
    """Input activations: IFMR calibration over the first ``batch_num`` training
    batches (which pass through in float), then ULQ with learnable clips.

    The clips are ``nn.Parameter``s from construction (so an optimizer made right
    after ``prepare_qat`` trains them) and are the only copy of them: calibration
    (``self.calibrator``, a ``qatcore.Calibrator``) fills them once and then only
    records that it is done and whether the lower clip is fixed at 0. Under
    ``torch.distributed`` the ranks' histograms are merged before IFMR runs, so
    every rank starts from the same clips.
    """

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
        cal = self.calibrator
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Histogram merges are exact and order-independent, so every rank that adds
            # the others' observations to its own holds the same histogram afterwards.
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, cal.state_dict())
            for rank, state in enumerate(states):
                if rank != dist.get_rank():
                    other = qatcore.Calibrator(cal.config)
                    other.load_state_dict(state, path=f"rank {rank}'s calibration state")
                    cal.merge(other)
        found = cal.calibrate()
        with torch.no_grad():
            self.clip_min.fill_(found.clip_min)
            self.clip_max.fill_(found.clip_max)

    def get_extra_state(self) -> Any:
        return _to_torch_state(self.calibrator.state_dict())

    def check_entries(self, state_dict: dict[str, Any], prefix: str) -> qatcore.Calibrator | None:
        """Check this module's checkpoint entries (keys under ``prefix``) without loading
        them: a bad one raises ``ValueError`` naming its key. Returns the calibrator the
        saved state describes (None when the checkpoint has none)."""
        _check_clip_entries(self, state_dict, prefix)
        key = prefix + "_extra_state"
        if key not in state_dict:
            return None
        validated = qatcore.Calibrator(self.calibrator.config)
        validated.load_state_dict(_to_numpy_state(state_dict[key]), path=key)
        return validated

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # Every entry is checked before any is loaded, with its key in the error.
        validated = self.check_entries(state_dict, prefix)
        if validated is not None:
            self._validated = validated
        try:
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        finally:
            self.__dict__.pop("_validated", None)

    def set_extra_state(self, state: Any) -> None:
        validated = self.__dict__.pop("_validated", None)
        if validated is None:
            validated = qatcore.Calibrator(self.calibrator.config)
            validated.load_state_dict(_to_numpy_state(state), path="extra_state")
        self.calibrator = validated

    def extra_repr(self) -> str:
        cal = self.calibrator
        if not cal.calibrated:
            return f"calibrating ({cal.batches_observed}/{cal.config.batch_num})"
        return f"clip_min={self.clip_min.item():.4g}, clip_max={self.clip_max.item():.4g}"


class WeightFakeQuant(nn.Module):
    """Weights through ARQ or ULQ, as the layer's ``WeightScheme`` decides.

    Under ULQ the symmetric ``scale`` is an ``nn.Parameter`` (one per channel along the
    scheme's ``axis``, or one per tensor) that starts from the weights' ARQ scale at the
    first forward; the zero point is always 0. A scale that the optimizer pushed below
    ``scheme.min_scale`` counts as it (SPEC "Weight ULQ"): a train() forward raises the
    parameter in place, an eval() forward leaves it. A non-finite one is a ``ValueError``.
    """

    scale: nn.Parameter
    initialized: torch.Tensor

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
        scale, low = self.scale, self.scheme.min_scale
        with torch.no_grad():
            if bool((scale >= low).all()):  # one device sync; NaN fails it too
                return scale
            if not bool(torch.isfinite(scale).all()):
                raise ValueError(
                    f"weight_quant.scale: expected finite values, got {scale.tolist()} "
                    "(did training diverge?)"
                )
            if self.training:
                scale.clamp_(min=low)
                return scale
        return scale.clamp(min=low)

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
        # The asymmetric weight ULQ of earlier versions saved clips: refused, not converted.
        for name in qatcore.quantizers.OLD_WEIGHT_STATE_KEYS:
            if prefix + name in state_dict:
                raise qatcore.quantizers.old_weight_state_error(prefix + name)
        if self.scheme.learns_scale:
            _check_clip_entries(self, state_dict, prefix, ("scale",))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self.check_entries(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def check_qat_entries(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Check every quantizer entry of a checkpoint for ``module`` and its submodules before
    anything is loaded (a ``load_state_dict`` pre-hook): a bad entry raises ``ValueError``
    naming its key, and no parameter, buffer or state of the model has changed."""
    for name, sub in module.named_modules():
        if isinstance(sub, (ActivationFakeQuant, WeightFakeQuant)):
            sub.check_entries(state_dict, f"{prefix}{name}." if name else prefix)


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
        channels = self._float_layer().weight.shape[axis]
        self.weight_quant = WeightFakeQuant(layer.retrain_weight_config, channels, axis=axis)
        device = self._float_layer().weight.device  # the quantizers' state lives beside it
        self.act_quant.to(device)
        self.weight_quant.to(device)
        # The layer's own weight loads before its quantizers are reached: check them first.
        self._float_layer().register_load_state_dict_pre_hook(check_qat_entries)

    def _float_layer(self) -> Any:
        return self  # the float layer this mixin is mixed into (weight, bias, ...)

    def _quantized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input and the weight the float computation takes."""
        weight = self._float_layer().weight
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


#: Earlier names of the quantized layers.
QuantLinear, QuantConv1d, QuantConv2d = LinearQAT, Conv1dQAT, Conv2dQAT

#: The one registry of quantizable layers: float type -> its quantized twin.
QUANTIZED: dict[type[nn.Module], Any] = {
    nn.Linear: LinearQAT,
    nn.Conv1d: Conv1dQAT,
    nn.Conv2d: Conv2dQAT,
    nn.Conv3d: Conv3dQAT,
    nn.ConvTranspose2d: ConvTranspose2dQAT,
}


def quantizable_layers(model: nn.Module) -> dict[str, str]:
    """The model's layers that qatcore quantizes, by name, with their float type's name
    (``"Conv2d"``; a layer already quantized gives the type it replaced)."""
    out = {}
    for name, m in model.named_modules():
        if name and type(m) in QUANTIZED:
            out[name] = type(m).__name__
        elif name and type(m) in QUANTIZED.values():
            out[name] = m._float_type.__name__
    return out


def _check_names(config: RetrainConfig, model: nn.Module) -> None:
    """Every layer and type the configuration names must be one the model can have
    quantized (as AMCT checks its own)."""
    from qatcore._amct import AMCT_RETRAIN_TYPES

    layers = quantizable_layers(model)
    modules = dict(model.named_modules())
    listed = ", ".join(layers) or "none"
    kinds = [t.__name__ for t in QUANTIZED]
    # Layers AMCT retrains and qatcore does not (LSTM, GRU, ConvTranspose1d): AMCT's files
    # for such a model name them; they stay float, with a warning where one asks for QAT.
    amct_only = {
        n: type(m).__name__
        for n, m in modules.items()
        if n and type(m).__name__ in AMCT_RETRAIN_TYPES and type(m) not in QUANTIZED
    }
    for name in config.layers:
        if name in amct_only:
            if config.for_layer(name, amct_only[name]).retrain_enable:
                warnings.warn(
                    f"layers.{name}: qatcore does not quantize {amct_only[name]} layers "
                    "(AMCT does); it stays float",
                    QuantizationWarning,
                    stacklevel=3,
                )
            continue
        if name in modules and name and name not in layers:
            *first, last = kinds
            raise ConfigError(
                f"layers.{name}",
                f"is a {type(modules[name]).__name__}; only {', '.join(first)} and {last} "
                "layers are quantized",
            )
        if name not in layers:
            raise ConfigError(
                f"layers.{name}",
                f"no layer of that name in the model (quantizable layers: {listed})",
            )
    for i, name in enumerate(config.skip_layers):
        if name not in layers and name not in amct_only:
            raise ConfigError(
                f"skip_layers[{i}]",
                f"{name!r}: no quantizable layer of that name in the model "
                f"(quantizable layers: {listed})",
            )
    for kind in config.layer_types:
        if kind not in kinds:
            raise ConfigError(
                f"layer_types.{kind}", f"qatcore quantizes {', '.join(kinds)} layers, not {kind}"
            )
    for i, kind in enumerate(config.skip_layer_types):
        if kind not in kinds and kind not in AMCT_RETRAIN_TYPES:
            raise ConfigError(
                f"skip_layer_types[{i}]",
                f"{kind!r} is not a layer type AMCT or qatcore quantizes "
                f"({', '.join(dict.fromkeys([*kinds, *AMCT_RETRAIN_TYPES]))})",
            )


def prepare_qat(model: nn.Module, config: Any = None, *, inplace: bool = False) -> nn.Module:
    """Replace every Linear, Conv1d, Conv2d, Conv3d and ConvTranspose2d that ``config``
    enables by its quantized twin (``LinearQAT``, ``Conv2dQAT``, ...).

    ``config`` is a ``RetrainConfig`` or anything ``RetrainConfig.load`` reads (a path,
    a text, a dict); None gives the defaults. Layer names are those of
    ``model.named_modules()`` and layer types the float classes' names; each layer gets
    ``config.for_layer(name, type)``. A name or type in the configuration that the model
    cannot have quantized is a ``ConfigError``; ``retrain_enable=False`` leaves a layer
    float. Returns the prepared model (a copy unless ``inplace``).
    """
    if config is None:
        config = RetrainConfig()
    elif not isinstance(config, (RetrainConfig, str, os.PathLike, Mapping)):
        raise TypeError(
            f"config: expected a RetrainConfig (or a path, text or dict it loads from), "
            f"got {type(config).__name__}"
        )
    config = RetrainConfig.load(config)
    _check_names(config, model)
    model = model if inplace else copy.deepcopy(model)
    # A model-level check first: PyTorch loads a module before its children, and layer
    # by layer, so a bad quantizer entry found late would leave earlier values loaded.
    model.register_load_state_dict_pre_hook(check_qat_entries)
    for name, mod in list(model.named_modules()):
        if not name or type(mod) not in QUANTIZED:
            continue
        layer = config.for_layer(name, type(mod).__name__)
        if layer.retrain_enable:
            new = QUANTIZED[type(mod)].from_float(mod, layer)
            new.act_quant.layer_name = name
            model.set_submodule(name, new)
    return model
