"""The retrain configuration of the seed, validated, resolved per layer, read and written.

Every parameter of ``quantization-config-parameters.txt`` is a field here, with the
seed's types, ranges, defaults and recommended values (see the README's
"Configuration" section). Errors are ``ConfigError`` (a ``ValueError``) whose
message gives the path of the offending value, the value and what is allowed.

The canonical JSON layout uses the seed's names: global defaults at the top level
and per-layer partial overrides under ``"layers"``::

    {"retrain_enable": true,
     "retrain_data_config": {"batch_num": 1, "clip_max": null, "clip_min": null,
                             "fixed_min": null, "dst_type": "INT8"},
     "retrain_weight_config": {"weights_retrain_algo": "arq_retrain",
                               "channel_wise": true, "dst_type": "INT8"},
     "layers": {"conv1": {"retrain_data_config": {"fixed_min": true}},
                "fc": {"retrain_enable": false}}}

The layout AMCT writes (``version``, ``batch_num`` and one section per layer at the
top level, ``algo`` keys inside the sections, ``ulq_retrain`` for ULQ weights) is
read and converted by ``RetrainConfig.from_json`` too.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "DST_TYPES",
    "WEIGHT_ALGORITHMS",
    "ConfigError",
    "LayerConfig",
    "QuantizationWarning",
    "RetrainConfig",
    "RetrainDataConfig",
    "RetrainWeightConfig",
]

#: "Currently, only INT8 quantization bit width is supported." (seed, tables 2, 3, 10)
DST_TYPES = ("INT8",)
#: Table 4: ULQ clipping-based quantization, or ARQ.
WEIGHT_ALGORITHMS = ("arq_retrain", "ulq_quantize")
_BITS = {"INT8": 8}


class QuantizationWarning(UserWarning):
    """A setting that works but that the seed advises against."""


class ConfigError(ValueError):
    """A configuration value that the seed does not allow. ``path`` locates it."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.path}" if prefix else self.path, self.problem)


def _got(value: object) -> str:
    return f"got {value!r} ({type(value).__name__})"


def _bool(value: object, name: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not bool:
        allowed = (
            "true, false or null (decided from calibration data)" if optional else "true or false"
        )
        raise ConfigError(name, f"expected {allowed}, {_got(value)}")


def _clip(value: object, name: str, positive: bool) -> None:
    if value is None:
        return
    side = "> 0" if positive else "< 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"expected a finite number {side} or null, {_got(value)}")
    if (value <= 0) if positive else (value >= 0):
        hint = ""
        if not positive and value == 0:
            hint = "; for a lower clip of 0, leave clip_min out and set fixed_min: true"
        raise ConfigError(name, f"expected a finite number {side} or null, {_got(value)}{hint}")


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"expected one of {', '.join(map(repr, allowed))}, {_got(value)}")


@dataclass(frozen=True)
class RetrainDataConfig:
    """Activation quantization (seed table 2).

    ``batch_num``: calibration batches (> 0, default 1). ``clip_max`` (> 0) and
    ``clip_min`` (< 0): fixed starting bounds; None lets IFMR compute them.
    ``fixed_min``: lower bound fixed at 0; None decides from calibration data
    (True when every observed value is >= 0). ``dst_type``: only ``"INT8"``.
    """

    batch_num: int = 1
    clip_max: float | None = None
    clip_min: float | None = None
    fixed_min: bool | None = None
    dst_type: str = "INT8"

    def __post_init__(self) -> None:
        if isinstance(self.batch_num, bool) or not isinstance(self.batch_num, int):
            raise ConfigError("batch_num", f"expected an integer > 0, {_got(self.batch_num)}")
        if self.batch_num <= 0:
            raise ConfigError("batch_num", f"expected an integer > 0, {_got(self.batch_num)}")
        _clip(self.clip_max, "clip_max", positive=True)
        _clip(self.clip_min, "clip_min", positive=False)
        _bool(self.fixed_min, "fixed_min", optional=True)
        if self.fixed_min is True and self.clip_min is not None:
            raise ConfigError(
                "fixed_min",
                f"fixed_min=true fixes the lower bound at 0, which contradicts clip_min="
                f"{self.clip_min!r}; remove one of them",
            )
        _choice(self.dst_type, "dst_type", DST_TYPES)
        for name in ("clip_max", "clip_min"):  # JSON integers are numbers too
            value = getattr(self, name)
            if isinstance(value, int):
                object.__setattr__(self, name, float(value))

    @property
    def num_bits(self) -> int:
        return _BITS[self.dst_type]


@dataclass(frozen=True)
class RetrainWeightConfig:
    """Weight quantization (seed table 3).

    ``weights_retrain_algo``: ``"arq_retrain"`` (default) or ``"ulq_quantize"``.
    ``channel_wise``: one scale per output channel (default, recommended) or one
    for the tensor. ``dst_type``: only ``"INT8"``.
    """

    weights_retrain_algo: str = "arq_retrain"
    channel_wise: bool = True
    dst_type: str = "INT8"

    def __post_init__(self) -> None:
        _choice(self.weights_retrain_algo, "weights_retrain_algo", WEIGHT_ALGORITHMS)
        _bool(self.channel_wise, "channel_wise")
        _choice(self.dst_type, "dst_type", DST_TYPES)

    @property
    def num_bits(self) -> int:
        return _BITS[self.dst_type]


@dataclass(frozen=True)
class LayerConfig:
    """One layer's settings (seed table 1 plus the two sections)."""

    retrain_enable: bool = True
    retrain_data_config: RetrainDataConfig = field(default_factory=RetrainDataConfig)
    retrain_weight_config: RetrainWeightConfig = field(default_factory=RetrainWeightConfig)

    def __post_init__(self) -> None:
        _bool(self.retrain_enable, "retrain_enable")
        if not isinstance(self.retrain_data_config, RetrainDataConfig):
            raise ConfigError(
                "retrain_data_config",
                f"expected a RetrainDataConfig, {_got(self.retrain_data_config)}",
            )
        if not isinstance(self.retrain_weight_config, RetrainWeightConfig):
            raise ConfigError(
                "retrain_weight_config",
                f"expected a RetrainWeightConfig, {_got(self.retrain_weight_config)}",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "retrain_enable": self.retrain_enable,
            "retrain_data_config": _section_dict(self.retrain_data_config),
            "retrain_weight_config": _section_dict(self.retrain_weight_config),
        }


_SECTIONS: dict[str, type[RetrainDataConfig] | type[RetrainWeightConfig]] = {
    "retrain_data_config": RetrainDataConfig,
    "retrain_weight_config": RetrainWeightConfig,
}
_LAYER_KEYS = ("retrain_enable", *_SECTIONS)
_TOP_KEYS = (*_LAYER_KEYS, "layers")


def _section_dict(section: RetrainDataConfig | RetrainWeightConfig) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in fields(section)}


def _check_keys(d: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in d:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key (allowed: {', '.join(allowed)}){hint}")


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected an object (a dict), {_got(value)}")
    return value


def _merge(base: LayerConfig, override: Mapping[str, Any], path: str) -> LayerConfig:
    """``base`` with the fields that ``override`` (a partial layer dict) sets, validated.

    Errors name the full path of the value below ``path``.
    """
    _check_keys(override, _LAYER_KEYS, path)
    changes: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name in override:
            section_path = f"{path}.{name}" if path else name
            partial = _mapping(override[name], section_path)
            _check_keys(partial, tuple(f.name for f in fields(cls)), section_path)
            try:
                changes[name] = replace(getattr(base, name), **partial)
            except ConfigError as e:
                raise e.under(section_path) from None
    if "retrain_enable" in override:
        changes["retrain_enable"] = override["retrain_enable"]
    try:
        return replace(base, **changes)
    except ConfigError as e:
        raise e.under(path) from None


@dataclass(frozen=True)
class RetrainConfig:
    """Global defaults plus per-layer partial overrides (layer names as in the model)."""

    defaults: LayerConfig = field(default_factory=LayerConfig)
    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, LayerConfig):
            raise ConfigError("defaults", f"expected a LayerConfig, {_got(self.defaults)}")
        layers = _mapping(self.layers, "layers")
        frozen = {}
        for name, override in layers.items():
            if not isinstance(name, str) or not name:
                raise ConfigError("layers", f"expected layer names as strings, {_got(name)}")
            path = f"layers.{name}"
            _merge(self.defaults, _mapping(override, path), path)  # validates the merge
            frozen[name] = MappingProxyType(copy.deepcopy(dict(override)))
        object.__setattr__(self, "layers", MappingProxyType(frozen))

    def for_layer(self, name: str) -> LayerConfig:
        """The fully resolved settings of layer ``name`` (defaults where not overridden)."""
        override = self.layers.get(name)
        if override is None:
            return self.defaults
        return _merge(self.defaults, override, f"layers.{name}")

    # ---- dict / JSON -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The canonical layout: full defaults, then the overrides as given."""
        out = self.defaults.to_dict()
        out["layers"] = {
            name: {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in o.items()}
            for name, o in self.layers.items()
        }
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainConfig:
        """Read the canonical layout or AMCT's (recognised by its ``version`` key)."""
        data = _mapping(data, "config")
        if "version" in data:
            return cls._from_amct(data)
        _check_keys(data, _TOP_KEYS, "")
        defaults = _merge(LayerConfig(), {k: v for k, v in data.items() if k != "layers"}, "")
        return cls(defaults, _mapping(data.get("layers", {}), "layers"))

    @classmethod
    def from_json(cls, source: str | os.PathLike[str] | Mapping[str, Any]) -> RetrainConfig:
        """From a dict, a JSON text or the path of a JSON file."""
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        text = str(source)
        where = "config"
        if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
            where = text
            with open(text, encoding="utf-8") as f:
                text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(where, f"not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def _from_amct(cls, data: Mapping[str, Any]) -> RetrainConfig:
        """AMCT's layout: version, batch_num, then one full section per layer."""
        if data.get("version") != 1:
            raise ConfigError(
                "version", f"expected 1 (the AMCT layout), {_got(data.get('version'))}"
            )
        top: dict[str, Any] = {}
        if "batch_num" in data:
            top["retrain_data_config"] = {"batch_num": data["batch_num"]}
        defaults = _merge(LayerConfig(), top, "")
        layers: dict[str, dict[str, Any]] = {}
        for name, section in data.items():
            if name in ("version", "batch_num"):
                continue
            layer = dict(_mapping(section, name))
            if "retrain_data_config" in layer:
                d = dict(_mapping(layer["retrain_data_config"], f"{name}.retrain_data_config"))
                algo = d.pop("algo", "ulq_quantize")
                if algo != "ulq_quantize":
                    raise ConfigError(
                        f"{name}.retrain_data_config.algo", f"expected 'ulq_quantize', {_got(algo)}"
                    )
                layer["retrain_data_config"] = d
            if "retrain_weight_config" in layer:
                w = dict(_mapping(layer["retrain_weight_config"], f"{name}.retrain_weight_config"))
                if "algo" in w:
                    algo = w.pop("algo")
                    w["weights_retrain_algo"] = "ulq_quantize" if algo == "ulq_retrain" else algo
                layer["retrain_weight_config"] = w
            layers[name] = layer
        return cls(defaults, layers)
