"""The retrain configuration of the seed, validated, resolved per layer, read and written.

Every parameter of ``quantization-config-parameters.txt`` is a field here, with the
seed's types, ranges, defaults and recommended values (see the README's
"Configuration" section). Errors are ``ConfigError`` (a ``ValueError``) whose
message gives the path of the offending value, the value and what is allowed.

The canonical JSON layout uses the seed's names: global defaults at the top level,
partial overrides by layer type under ``"layer_types"`` and by layer name under
``"layers"``, and skip lists::

    {"retrain_enable": true,
     "retrain_data_config": {"batch_num": 1, "clip_max": null, "clip_min": null,
                             "fixed_min": null, "dst_type": "INT8"},
     "retrain_weight_config": {"weights_retrain_algo": "arq_retrain",
                               "channel_wise": true, "dst_type": "INT8"},
     "layer_types": {"Linear": {"retrain_weight_config": {"channel_wise": false}}},
     "layers": {"conv1": {"retrain_data_config": {"fixed_min": true}},
                "fc": {"retrain_enable": false}},
     "skip_layers": [], "skip_layer_types": [], "fakequant_precision_mode": "DEFAULT"}

A layer's settings are, field by field: its ``layers`` override, else its type's
``layer_types`` override, else the global defaults. ``skip_layers`` and
``skip_layer_types`` leave a layer float unless one of its overrides sets
``retrain_enable`` itself (as in AMCT, where an override re-enables a skipped layer).

``RetrainConfig.load`` also reads AMCT's two other forms (see ``qatcore._amct``):
the graph-mode JSON that ``create_quant_retrain_config`` writes (``version``,
``batch_num``, one section per layer; a layer it does not list stays float) and the
``.cfg`` "simple config" in protobuf text format. The single-op ``config=`` dict of
AMCT's ``Conv2dQAT`` and friends is the canonical layout's top level.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
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

#: The widths AMCT's schema names (its ``DataType``); the seed's tables say INT8 only,
#: AMCT's own samples train INT4 weights and INT16 activations.
DST_TYPES = ("INT4", "INT8", "INT16")
#: Table 4: ULQ clipping-based quantization, or ARQ.
WEIGHT_ALGORITHMS = ("arq_retrain", "ulq_quantize")
#: Other names of the weight algorithms: AMCT's graph mode, ``.cfg`` and single-op
#: layers call weight ULQ ``ulq_retrain``.
WEIGHT_ALGORITHM_ALIASES = {"ulq_retrain": "ulq_quantize"}
#: AMCT's global ``fakequant_precision_mode`` values. qatcore fake-quantizes in float32
#: either way, so ``FORCE_FP16_QUANT`` changes nothing here (a warning says so).
FAKEQUANT_PRECISION_MODES = ("DEFAULT", "FORCE_FP16_QUANT")
_BITS = {"INT4": 4, "INT8": 8, "INT16": 16}


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
    ``fixed_min``: lower bound fixed at 0 (a ``clip_min`` beside it is then unused);
    None decides from calibration data (True when every observed value is >= 0).
    ``dst_type``: ``"INT8"`` (default), ``"INT4"`` or ``"INT16"``.
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
        # fixed_min=true with a clip_min is accepted, as AMCT does: the lower clip is 0
        # (calibration ignores clip_min); RetrainConfig warns with the path.
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

    ``weights_retrain_algo``: ``"arq_retrain"`` (default) or ``"ulq_quantize"``
    (``"ulq_retrain"``, AMCT's name, is read as ``"ulq_quantize"``).
    ``channel_wise``: one scale per output channel (default, recommended) or one
    for the tensor. ``dst_type``: ``"INT8"`` (default), ``"INT4"`` or ``"INT16"``.
    """

    weights_retrain_algo: str = "arq_retrain"
    channel_wise: bool = True
    dst_type: str = "INT8"

    def __post_init__(self) -> None:
        if isinstance(self.weights_retrain_algo, str):  # AMCT's name for weight ULQ
            algo = WEIGHT_ALGORITHM_ALIASES.get(self.weights_retrain_algo)
            if algo is not None:
                object.__setattr__(self, "weights_retrain_algo", algo)
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
_TOP_KEYS = (
    *_LAYER_KEYS,
    "layer_types",
    "layers",
    "skip_layers",
    "skip_layer_types",
    "fakequant_precision_mode",
)


def type_channel_wise(layer_type: str | None) -> bool:
    """AMCT's ``channel_wise`` where a graph-mode JSON or ``.cfg`` leaves it out: per
    tensor for ``Linear``, per channel for the convolutions. An override's
    ``"channel_wise": null`` asks for it."""
    return layer_type != "Linear"


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


def _merge(
    base: LayerConfig,
    override: Mapping[str, Any],
    path: str,
    layer_type: str | None = None,
    *,
    by_type: bool = True,
) -> LayerConfig:
    """``base`` with the fields that ``override`` (a partial layer dict) sets, validated.

    In an override (``by_type``), ``"channel_wise": null`` is the default of
    ``layer_type`` (:func:`type_channel_wise`). Errors name the full path of the value
    below ``path``.
    """
    _check_keys(override, _LAYER_KEYS, path)
    changes: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name in override:
            section_path = _join(path, name)
            partial = dict(_mapping(override[name], section_path))
            _check_keys(partial, tuple(f.name for f in fields(cls)), section_path)
            if by_type and cls is RetrainWeightConfig and partial.get("channel_wise", 0) is None:
                partial["channel_wise"] = type_channel_wise(layer_type)
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


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix and rest else prefix or rest


def _canonical_layer(name: str) -> str:
    return f"layers.{name}"


def _canonical_type(name: str) -> str:
    return f"layer_types.{name}"


def _same(rest: str) -> str:
    return rest


@dataclass(frozen=True)
class _Where:
    """How a source names the places of a configuration in its errors and warnings:
    the canonical layout's own paths by default. AMCT's readers give theirs: where a
    layer's or a type's override sits (a section at the top level of a graph-mode JSON,
    an ``override_layer_configs`` entry of a ``.cfg``) and the names of the fields below
    (``clip_max_min.clip_max``)."""

    layer: Callable[[str], str] = _canonical_layer
    layer_type: Callable[[str], str] = _canonical_type
    field: Callable[[str], str] = _same

    def rename(self, error: ConfigError, prefix: str, source: str) -> ConfigError:
        """``error``, raised below the canonical ``prefix``, below the source's ``source``."""
        rest = error.path
        if prefix and rest.startswith(prefix + "."):
            rest = rest[len(prefix) + 1 :]
        elif prefix and rest == prefix:
            rest = ""
        return ConfigError(_join(source, self.field(rest)), error.problem)


_CANONICAL = _Where()


def _warn(path: str, message: str) -> None:
    warnings.warn(f"{path}: {message}", QuantizationWarning, stacklevel=5)


def _check_fixed_min(
    merged: LayerConfig, override: Mapping[str, Any] | None, where: _Where, source: str
) -> None:
    """Warn where a configuration sets ``fixed_min: true`` beside a ``clip_min``."""
    d = merged.retrain_data_config
    if d.fixed_min is not True or d.clip_min is None:
        return
    if override is not None:  # only where this override sets one of the two
        section = override.get("retrain_data_config")
        if not isinstance(section, Mapping) or not {"fixed_min", "clip_min"} & set(section):
            return
    _warn(
        _join(source, where.field("retrain_data_config")),
        f"fixed_min=true with clip_min={d.clip_min!r}: the lower clip is fixed at 0 and "
        "clip_min is not used (as in AMCT)",
    )


def _names(value: object, path: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(path, f"expected a list of names, {_got(value)}")
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}[{i}]", f"expected a non-empty string, {_got(name)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def _validate(config: RetrainConfig, where: _Where) -> None:
    """Every check of a ``RetrainConfig`` beyond its fields' own, and the warnings, with
    the source's paths (``where``)."""
    mode = config.fakequant_precision_mode
    if mode not in FAKEQUANT_PRECISION_MODES:
        allowed = ", ".join(map(repr, FAKEQUANT_PRECISION_MODES))
        raise ConfigError("fakequant_precision_mode", f"expected one of {allowed}, {_got(mode)}")
    if mode == "FORCE_FP16_QUANT":
        _warn(
            "fakequant_precision_mode",
            "FORCE_FP16_QUANT changes nothing in qatcore, which fake-quantizes in float32",
        )
    _check_fixed_min(config.defaults, None, where, "")
    for kind, rules, name_of in (
        ("layer_types", config.layer_types, where.layer_type),
        ("layers", config.layers, where.layer),
    ):
        for key, override in rules.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(kind, f"expected names as non-empty strings, {_got(key)}")
            prefix, source = f"{kind}.{key}", name_of(key)
            layer_type = key if kind == "layer_types" else None
            try:
                merged = _merge(config.defaults, _mapping(override, prefix), prefix, layer_type)
            except ConfigError as e:
                raise where.rename(e, prefix, source) from None
            _check_fixed_min(merged, override, where, source)


def _frozen(rules: Mapping[str, Any], kind: str) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType(
        {
            k: MappingProxyType(copy.deepcopy(dict(_mapping(v, f"{kind}.{k}"))))
            for k, v in rules.items()
        }
    )


def _plain(rules: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        name: {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in o.items()}
        for name, o in rules.items()
    }


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
            return _join(path, value.duplicates[0])
        children = [(_join(path, str(k)), v) for k, v in value.items()]
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


#: A ``.cfg`` text starts with a comment or a field name followed by ``:`` or ``{``.
_CFG_START = re.compile(r"\s*(#|[A-Za-z_]\w*\s*[:{])")


def _is_cfg_text(text: str) -> bool:
    """Whether a string that is not a JSON text is ``.cfg`` text rather than a path."""
    if "\n" in text:
        return True
    looks_like_path = text.endswith((".cfg", ".json")) or "/" in text or "\\" in text
    return not looks_like_path and _CFG_START.match(text) is not None


@dataclass(frozen=True)
class RetrainConfig:
    """Global defaults, overrides by layer type and by layer name, and skip lists.

    ``for_layer(name, layer_type)`` resolves one layer, field by field: the ``layers``
    override of ``name``, else the ``layer_types`` override of ``layer_type`` (the
    PyTorch class name, ``"Conv2d"``, ``"Linear"``, ...), else ``defaults``. A layer in
    ``skip_layers``, or of a type in ``skip_layer_types``, stays float unless one of its
    overrides sets ``retrain_enable`` itself (AMCT's rule: an override re-enables a
    skipped layer). ``fakequant_precision_mode`` is AMCT's global key (``"DEFAULT"`` or
    ``"FORCE_FP16_QUANT"``, which changes nothing here: qatcore computes in float32).

    ``RetrainConfig.load(source)`` reads any of the three forms (see the module).
    """

    defaults: LayerConfig = field(default_factory=LayerConfig)
    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layer_types: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    skip_layers: Sequence[str] = ()
    skip_layer_types: Sequence[str] = ()
    fakequant_precision_mode: str = "DEFAULT"

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, LayerConfig):
            raise ConfigError("defaults", f"expected a LayerConfig, {_got(self.defaults)}")
        for name in ("layers", "layer_types"):
            object.__setattr__(self, name, _frozen(_mapping(getattr(self, name), name), name))
        for name in ("skip_layers", "skip_layer_types"):
            object.__setattr__(self, name, _names(getattr(self, name), name))
        if getattr(self, "_where", None) is None:
            _validate(self, _CANONICAL)

    @classmethod
    def _build(cls, where: _Where, **kwargs: Any) -> RetrainConfig:
        """Construct with the errors and warnings named as the source ``where`` names them
        (the AMCT readers)."""
        config = cls.__new__(cls)
        object.__setattr__(config, "_where", where)
        try:
            config.__init__(**kwargs)  # type: ignore[misc]
        finally:
            object.__delattr__(config, "_where")
        _validate(config, where)
        return config

    def for_layer(self, name: str, layer_type: str | None = None) -> LayerConfig:
        """The fully resolved settings of layer ``name`` of type ``layer_type``."""
        out = self.defaults
        by_type = self.layer_types.get(layer_type) if layer_type is not None else None
        by_name = self.layers.get(name)
        if by_type is not None:
            out = _merge(out, by_type, f"layer_types.{layer_type}", layer_type)
        if by_name is not None:
            out = _merge(out, by_name, f"layers.{name}", layer_type)
        decided = any(o is not None and "retrain_enable" in o for o in (by_type, by_name))
        skipped = name in self.skip_layers or layer_type in self.skip_layer_types
        if skipped and not decided and out.retrain_enable:
            out = replace(out, retrain_enable=False)
        return out

    # ---- reading -----------------------------------------------------------------

    @classmethod
    def load(
        cls, source: str | os.PathLike[str] | Mapping[str, Any] | RetrainConfig
    ) -> RetrainConfig:
        """Any of the three forms, from a dict, a text or the path of a file.

        A dict, or a text or file starting with ``{``, is JSON: AMCT's graph-mode
        layout when it has a ``version`` key, else the canonical layout (of which
        AMCT's single-op ``config=`` dict is the top level). A ``.cfg`` file, or any
        other text, is AMCT's protobuf text format (needs ``protobuf``).
        """
        if isinstance(source, RetrainConfig):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(
                "source: expected a path, a JSON or .cfg text, a dict or a RetrainConfig, "
                f"got {type(source).__name__}"
            )
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_dict(parse_json(source, "config"))
        if isinstance(source, str) and not os.path.exists(source) and _is_cfg_text(source):
            from ._amct import from_cfg

            return from_cfg(source, "config")
        path = os.fspath(source)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith(".cfg") or not (path.endswith(".json") or text.lstrip()[:1] == "{"):
            from ._amct import from_cfg

            return from_cfg(text, path)
        return cls.from_dict(parse_json(text, path))

    @classmethod
    def from_json(
        cls, source: str | os.PathLike[str] | Mapping[str, Any] | RetrainConfig
    ) -> RetrainConfig:
        """The same as :meth:`load` (the name of earlier releases)."""
        return cls.load(source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainConfig:
        """The canonical layout (or AMCT's single-op dict, its top level), or AMCT's
        graph-mode JSON, recognised by its ``version`` key."""
        data = _mapping(data, "config")
        if "version" in data:
            from ._amct import from_graph_json

            return from_graph_json(data)
        _check_keys(data, _TOP_KEYS, "")
        top = {k: v for k, v in data.items() if k in _LAYER_KEYS}
        defaults = _merge(LayerConfig(), top, "", by_type=False)
        return cls(
            defaults,
            _mapping(data.get("layers", {}), "layers"),
            _mapping(data.get("layer_types", {}), "layer_types"),
            data.get("skip_layers", ()),
            data.get("skip_layer_types", ()),
            data.get("fakequant_precision_mode", "DEFAULT"),
        )

    # ---- writing -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The canonical layout: full defaults, the overrides as given, the skip lists."""
        out = self.defaults.to_dict()
        out["layer_types"] = _plain(self.layer_types)
        out["layers"] = _plain(self.layers)
        out["skip_layers"] = list(self.skip_layers)
        out["skip_layer_types"] = list(self.skip_layer_types)
        out["fakequant_precision_mode"] = self.fakequant_precision_mode
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_amct(self, layers: Mapping[str, str]) -> dict[str, Any]:
        """AMCT's graph-mode JSON (as a dict) for a model whose quantizable layers are
        ``layers`` (name -> type, e.g. ``{"conv1": "Conv2d"}``; ``qatcore.torch``'s
        ``to_amct_json(model, config)`` finds them): every layer listed with its resolved
        settings, so that AMCT and qatcore read the same thing from the file. Settings
        that layout cannot hold are a ``ConfigError`` naming the layer."""
        from ._amct import to_graph_json

        return to_graph_json(self, layers)
