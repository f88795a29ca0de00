"""AMCT's graph-mode JSON (what ``create_quant_retrain_config`` writes), read and written.

Its meaning is AMCT's (read from its sources, ``hicann/amct``): a layer the file does
not list is not quantized; a listed layer without ``retrain_enable`` is; ``algo`` names
the algorithm (``ulq_retrain`` for weight ULQ); ``channel_wise`` left out is AMCT's
default for the layer's type (``amct_types``). ``version``, ``batch_num`` and
``fakequant_precision_mode`` are global; every other top-level key is a layer. Each
layer's sections are the canonical ones with ``algo`` for the algorithm's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from .amct_types import PER_TENSOR_TYPES, type_channel_wise
from .canonical import as_mapping, read_override
from .errors import ConfigError, Paths, got
from .model import LayerConfig, LayerOverride, RetrainDataConfig, RetrainSettings

__all__ = ["GLOBAL_KEYS", "PATHS", "is_graph_layout", "read", "write"]

C = TypeVar("C", bound=RetrainSettings)

#: The top-level keys of AMCT's graph-mode JSON that are not layers.
GLOBAL_KEYS = ("version", "batch_num", "fakequant_precision_mode")
#: Keys of a layer's section that configure pruning.
_PRUNE_KEYS = ("regular_prune_enable", "regular_prune_config")


def is_graph_layout(data: Mapping[str, Any]) -> bool:
    """Whether a JSON object is AMCT's graph-mode layout (it has a ``version``)."""
    return "version" in data


def _field(rest: str) -> str:
    prefix = "retrain_weight_config.weights_retrain_algo"
    return "retrain_weight_config.algo" if rest == prefix else rest


#: A layer is a top-level section; the weight algorithm's key is ``algo``.
PATHS = Paths(layer=lambda name: name, field=_field)


def _layer(name: str, value: object) -> LayerOverride:
    """One layer's section as an override of the (float) defaults."""
    section = dict(as_mapping(value, name))
    for key in _PRUNE_KEYS:
        # "regular_prune_enable": false (AMCT writes it when it also prunes) asks
        # for nothing; anything else asks for pruning.
        if key in section and not (key == "regular_prune_enable" and section[key] is False):
            raise ConfigError(f"{name}.{key}", "qatcore does not prune; remove it")
        section.pop(key, None)
    section.setdefault("retrain_enable", True)
    if "retrain_data_config" in section:
        d = dict(as_mapping(section["retrain_data_config"], f"{name}.retrain_data_config"))
        algo = d.pop("algo", "ulq_quantize")
        if algo != "ulq_quantize":
            raise ConfigError(
                f"{name}.retrain_data_config.algo",
                f"expected 'ulq_quantize' (AMCT's activation algorithm), {got(algo)}",
            )
        section["retrain_data_config"] = d
    w = dict(as_mapping(section.get("retrain_weight_config", {}), f"{name}.retrain_weight_config"))
    if "algo" in w:
        w["weights_retrain_algo"] = w.pop("algo")
    w.setdefault("channel_wise", None)  # AMCT's default for the layer's type
    section["retrain_weight_config"] = w
    try:
        return read_override(section, "")
    except ConfigError as e:
        raise PATHS.locate(e, PATHS.layer(name)) from None


def read(data: Mapping[str, Any], cls: type[C]) -> C:
    """AMCT's graph-mode JSON as ``cls``: a layer it does not list stays float."""
    version = data.get("version")
    if type(version) is not int or version != 1:
        raise ConfigError("version", f"expected 1 (AMCT's graph-mode layout), {got(version)}")
    data_defaults = RetrainDataConfig()
    if "batch_num" in data:
        try:
            data_defaults = RetrainDataConfig(batch_num=data["batch_num"])
        except ConfigError as e:
            raise ConfigError("batch_num", e.problem) from None
    layers = {name: _layer(name, v) for name, v in data.items() if name not in GLOBAL_KEYS}
    return cls(
        LayerConfig(retrain_enable=False, retrain_data_config=data_defaults),
        layers,
        fakequant_precision_mode=data.get("fakequant_precision_mode", "DEFAULT"),
        paths=PATHS,
    )


def write(config: RetrainSettings, layers: Mapping[str, str]) -> dict[str, Any]:
    """``config`` resolved for the quantizable ``layers`` (name -> type) as AMCT's
    graph-mode JSON (a dict). What the layout cannot hold is a ``ConfigError`` naming
    the layer."""
    resolved = {name: config.for_layer(name, kind) for name, kind in layers.items()}
    batch = {r.retrain_data_config.batch_num for r in resolved.values()}
    if len(batch) > 1:
        raise ConfigError(
            "batch_num",
            f"AMCT's graph-mode JSON has one batch_num; the layers resolve to {sorted(batch)}",
        )
    out: dict[str, Any] = {
        "version": 1,
        "batch_num": batch.pop() if batch else config.defaults.retrain_data_config.batch_num,
    }
    if config.fakequant_precision_mode != "DEFAULT":
        out["fakequant_precision_mode"] = config.fakequant_precision_mode
    for name, layer in resolved.items():
        if name in GLOBAL_KEYS:
            raise ConfigError(f"layers.{name}", "AMCT's graph-mode JSON reserves that name")
        kind = layers[name]
        d, w = layer.retrain_data_config, layer.retrain_weight_config
        data: dict[str, Any] = {"algo": "ulq_quantize"}
        if (d.clip_max is None) != (d.clip_min is None):
            raise ConfigError(
                f"layers.{name}.retrain_data_config",
                "AMCT's graph-mode JSON takes clip_max and clip_min together (the one left "
                "out would come from IFMR here); set both or neither",
            )
        if d.clip_max is not None:
            data["clip_max"], data["clip_min"] = d.clip_max, d.clip_min
        if d.fixed_min is not None:
            data["fixed_min"] = d.fixed_min
        data["dst_type"] = d.dst_type
        if kind in PER_TENSOR_TYPES and w.channel_wise and layer.retrain_enable:
            raise ConfigError(
                f"layers.{name}.retrain_weight_config.channel_wise",
                f"AMCT refuses channel_wise true for {kind} layers (per tensor only); set it "
                f'false for them, e.g. "layer_types": {{"{kind}": {{"retrain_weight_config": '
                '{"channel_wise": false}}}',
            )
        out[name] = {
            "retrain_enable": layer.retrain_enable,
            "retrain_data_config": data,
            "retrain_weight_config": {
                "algo": "ulq_retrain"
                if w.weights_retrain_algo == "ulq_quantize"
                else "arq_retrain",
                # A per-tensor type left float is written per tensor, the only form AMCT
                # reads for it.
                "channel_wise": w.channel_wise and type_channel_wise(kind),
                "dst_type": w.dst_type,
            },
        }
    return out
