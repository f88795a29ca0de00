"""The canonical JSON layout, read and written.

Global defaults at the top level, partial overrides by layer type under
``"layer_types"`` and by layer name under ``"layers"``, skip lists, and AMCT's global
``fakequant_precision_mode``; the names are the seed's. AMCT's single-op ``config=``
dict is its top level. Errors name the value's path in the layout and suggest the
nearest key for an unknown one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from .errors import ConfigError, got, join_path
from .model import (
    DataOverride,
    LayerConfig,
    LayerOverride,
    RetrainDataConfig,
    RetrainSettings,
    RetrainWeightConfig,
    WeightOverride,
)

__all__ = [
    "LAYER_KEYS",
    "TOP_KEYS",
    "as_mapping",
    "check_keys",
    "parse_json",
    "read",
    "read_layer",
    "read_override",
    "to_dict",
    "to_json",
]

C = TypeVar("C", bound=RetrainSettings)

#: A layer's keys: at the top level (the defaults) and in each override.
LAYER_KEYS = ("retrain_enable", "retrain_data_config", "retrain_weight_config")
TOP_KEYS = (
    *LAYER_KEYS,
    "layer_types",
    "layers",
    "skip_layers",
    "skip_layer_types",
    "fakequant_precision_mode",
)


def check_keys(d: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in d:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key (allowed: {', '.join(allowed)}){hint}")


def as_mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected an object (a dict), {got(value)}")
    return value


def _layer_values(d: Mapping[str, Any], path: str, data: type, weight: type) -> dict[str, Any]:
    """The sections of a layer dict built as ``data`` and ``weight``, and its
    ``retrain_enable``: the arguments of a ``LayerConfig`` or a ``LayerOverride``."""
    check_keys(d, LAYER_KEYS, path)
    out: dict[str, Any] = {}
    for key, cls in (("retrain_data_config", data), ("retrain_weight_config", weight)):
        if key in d:
            section_path = join_path(path, key)
            section = as_mapping(d[key], section_path)
            check_keys(section, tuple(f.name for f in fields(cls)), section_path)
            try:
                out[key] = cls(**section)
            except ConfigError as e:
                raise e.under(section_path) from None
    if "retrain_enable" in d:
        out["retrain_enable"] = d["retrain_enable"]
    return out


def read_layer(d: Mapping[str, Any], path: str) -> LayerConfig:
    """A layer dict as whole settings: what it leaves out is the seed's default."""
    values = _layer_values(d, path, RetrainDataConfig, RetrainWeightConfig)
    try:
        return LayerConfig(**values)
    except ConfigError as e:
        raise e.under(path) from None


def read_override(d: Mapping[str, Any], path: str) -> LayerOverride:
    """A layer dict as an override: the fields it sets (``"channel_wise": null`` is
    AMCT's default for the layer's type)."""
    values = _layer_values(d, path, DataOverride, WeightOverride)
    try:
        return LayerOverride(**values)
    except ConfigError as e:
        raise e.under(path) from None


def _read_rules(value: object, kind: str) -> dict[str, LayerOverride]:
    rules = as_mapping(value, kind)
    return {k: read_override(as_mapping(v, f"{kind}.{k}"), f"{kind}.{k}") for k, v in rules.items()}


def read(data: Mapping[str, Any], cls: type[C]) -> C:
    """The canonical layout (or AMCT's single-op dict, its top level) as ``cls``."""
    check_keys(data, TOP_KEYS, "")
    defaults = read_layer({k: v for k, v in data.items() if k in LAYER_KEYS}, "")
    layer_types = _read_rules(data.get("layer_types", {}), "layer_types")
    layers = _read_rules(data.get("layers", {}), "layers")
    return cls(
        defaults,
        layers,
        layer_types,
        data.get("skip_layers", ()),
        data.get("skip_layer_types", ()),
        data.get("fakequant_precision_mode", "DEFAULT"),
    )


def to_dict(config: RetrainSettings) -> dict[str, Any]:
    """The canonical layout: full defaults, the overrides' fields, the skip lists."""
    out = config.defaults.to_dict()
    out["layer_types"] = {name: o.to_dict() for name, o in config.layer_types.items()}
    out["layers"] = {name: o.to_dict() for name, o in config.layers.items()}
    out["skip_layers"] = list(config.skip_layers)
    out["skip_layer_types"] = list(config.skip_layer_types)
    out["fakequant_precision_mode"] = config.fakequant_precision_mode
    return out


def to_json(config: RetrainSettings, indent: int | None) -> str:
    return json.dumps(to_dict(config), indent=indent)


# ---- JSON text ------------------------------------------------------------------------


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers the keys it was given twice."""

    duplicates: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object()
    seen: list[str] = []
    for key, value in pairs:
        if key in out and key not in seen:
            seen.append(key)
        out[key] = value
    out.duplicates = tuple(seen)
    return out


def _first_duplicate(value: object, path: str) -> str | None:
    children: list[tuple[str, object]] = []
    if isinstance(value, _Object):
        if value.duplicates:
            return join_path(path, value.duplicates[0])
        children = [(join_path(path, str(k)), v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    for child_path, child in children:
        found = _first_duplicate(child, child_path)
        if found is not None:
            return found
    return None


def _plain_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    return value


def parse_json(text: str, where: str) -> Any:
    """The JSON ``text`` (read from ``where``) as plain dicts and lists. A key given twice
    in one object is a ``ConfigError`` naming its path, where ``json`` keeps the last."""
    try:
        data = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        raise ConfigError(where, f"not valid JSON: {e}") from None
    duplicate = _first_duplicate(data, "")
    if duplicate is not None:
        raise ConfigError(duplicate, f"key given twice in {where} (each key once, please)")
    return _plain_json(data)
