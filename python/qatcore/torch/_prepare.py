"""``prepare_qat`` and the rules that hold a configuration against a model's layers."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from qatcore.config import AMCT_RETRAIN_TYPES, ConfigError, QuantizationWarning, RetrainConfig

from ._checkpoint import check_before_loading
from ._layers import QUANTIZED

__all__ = ["prepare_qat", "quantizable_layers"]


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
    model.register_load_state_dict_pre_hook(check_before_loading)
    for name, mod in list(model.named_modules()):
        if not name or type(mod) not in QUANTIZED:
            continue
        layer = config.for_layer(name, type(mod).__name__)
        if layer.retrain_enable:
            new = QUANTIZED[type(mod)].from_float(mod, layer)
            new.act_quant.layer_name = name
            model.set_submodule(name, new)
    return model
