"""The retrain configuration as data: frozen dataclasses, validated at construction,
that know no file format (the readers and writers beside this module do).

``RetrainDataConfig`` and ``RetrainWeightConfig`` are the seed's two sections,
``LayerConfig`` one layer's settings. An override is partial: ``DataOverride``,
``WeightOverride`` and ``LayerOverride`` hold the fields it sets (``UNSET`` marks the
others), checked once when it is built, so resolving a layer only merges typed values.
``RetrainSettings`` holds global defaults, overrides by layer type and by layer name,
and skip lists, and resolves a layer (``for_layer``); ``RetrainConfig`` is it with its
file forms.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final

from .amct_types import type_channel_wise
from .errors import CANONICAL, ConfigError, Paths, got, join_path, warn_at

__all__ = [
    "DST_TYPES",
    "FAKEQUANT_PRECISION_MODES",
    "UNSET",
    "WEIGHT_ALGORITHMS",
    "WEIGHT_ALGORITHM_ALIASES",
    "DataOverride",
    "LayerConfig",
    "LayerOverride",
    "RetrainDataConfig",
    "RetrainSettings",
    "RetrainWeightConfig",
    "Unset",
    "WeightOverride",
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


def _bool(value: object, name: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not bool:
        allowed = (
            "true, false or null (decided from calibration data)" if optional else "true or false"
        )
        raise ConfigError(name, f"expected {allowed}, {got(value)}")


def _clip(value: object, name: str, positive: bool) -> None:
    if value is None:
        return
    side = "> 0" if positive else "< 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"expected a finite number {side} or null, {got(value)}")
    if (value <= 0) if positive else (value >= 0):
        hint = ""
        if not positive and value == 0:
            hint = "; for a lower clip of 0, leave clip_min out and set fixed_min: true"
        raise ConfigError(name, f"expected a finite number {side} or null, {got(value)}{hint}")


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"expected one of {', '.join(map(repr, allowed))}, {got(value)}")


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
            raise ConfigError("batch_num", f"expected an integer > 0, {got(self.batch_num)}")
        if self.batch_num <= 0:
            raise ConfigError("batch_num", f"expected an integer > 0, {got(self.batch_num)}")
        _clip(self.clip_max, "clip_max", positive=True)
        _clip(self.clip_min, "clip_min", positive=False)
        _bool(self.fixed_min, "fixed_min", optional=True)
        # fixed_min=true with a clip_min is accepted, as AMCT does: the lower clip is 0
        # (calibration ignores clip_min); RetrainSettings warns with the path.
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


def _section_dict(section: object) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in fields(section)}  # type: ignore[arg-type]


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
                f"expected a RetrainDataConfig, {got(self.retrain_data_config)}",
            )
        if not isinstance(self.retrain_weight_config, RetrainWeightConfig):
            raise ConfigError(
                "retrain_weight_config",
                f"expected a RetrainWeightConfig, {got(self.retrain_weight_config)}",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "retrain_enable": self.retrain_enable,
            "retrain_data_config": _section_dict(self.retrain_data_config),
            "retrain_weight_config": _section_dict(self.retrain_weight_config),
        }


# ---- partial overrides --------------------------------------------------------------


class Unset(enum.Enum):
    """The value of an override's field that the override leaves alone (``None`` is a
    value: ``clip_max: null`` asks IFMR for the clip)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def _given(override: object) -> dict[str, Any]:
    """The fields an override sets, by name, in field order."""
    out = {f.name: getattr(override, f.name) for f in fields(override)}  # type: ignore[arg-type]
    return {name: value for name, value in out.items() if value is not UNSET}


def _take_checked(override: object, checked: object, names: Sequence[str]) -> None:
    """Keep the section's reading of the values (``3`` as ``3.0``, ``ulq_retrain`` as
    ``ulq_quantize``)."""
    for name in names:
        object.__setattr__(override, name, getattr(checked, name))


@dataclass(frozen=True)
class DataOverride:
    """The fields of a ``RetrainDataConfig`` that an override sets; checked as the
    section checks them (errors name the field)."""

    batch_num: int | Unset = UNSET
    clip_max: float | Unset | None = UNSET
    clip_min: float | Unset | None = UNSET
    fixed_min: bool | Unset | None = UNSET
    dst_type: str | Unset = UNSET

    def __post_init__(self) -> None:
        given = self.given()
        _take_checked(self, RetrainDataConfig(**given), list(given))

    def given(self) -> dict[str, Any]:
        return _given(self)

    def apply(self, base: RetrainDataConfig) -> RetrainDataConfig:
        return replace(base, **self.given())


@dataclass(frozen=True)
class WeightOverride:
    """The fields of a ``RetrainWeightConfig`` that an override sets. ``channel_wise``
    None is AMCT's default for the layer's type (``amct_types.type_channel_wise``)."""

    weights_retrain_algo: str | Unset = UNSET
    channel_wise: bool | Unset | None = UNSET
    dst_type: str | Unset = UNSET

    def __post_init__(self) -> None:
        values = self.given()
        if self.channel_wise is None:
            del values["channel_wise"]
        _take_checked(self, RetrainWeightConfig(**values), list(values))

    def given(self) -> dict[str, Any]:
        return _given(self)

    def apply(self, base: RetrainWeightConfig, layer_type: str | None) -> RetrainWeightConfig:
        values = self.given()
        if self.channel_wise is None:
            values["channel_wise"] = type_channel_wise(layer_type)
        return replace(base, **values)


@dataclass(frozen=True)
class LayerOverride:
    """What an override by layer name or type sets: ``retrain_enable`` unless
    ``UNSET``, and the sections it names (None: it names none)."""

    retrain_enable: bool | Unset = UNSET
    retrain_data_config: DataOverride | None = None
    retrain_weight_config: WeightOverride | None = None

    def __post_init__(self) -> None:
        if self.retrain_enable is not UNSET:
            _bool(self.retrain_enable, "retrain_enable")
        for name, cls in (
            ("retrain_data_config", DataOverride),
            ("retrain_weight_config", WeightOverride),
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise ConfigError(name, f"expected a {cls.__name__} or None, {got(value)}")

    def apply(self, base: LayerConfig, layer_type: str | None) -> LayerConfig:
        """``base`` with what this override sets, for a layer of type ``layer_type``."""
        data, weight = base.retrain_data_config, base.retrain_weight_config
        if self.retrain_data_config is not None:
            data = self.retrain_data_config.apply(data)
        if self.retrain_weight_config is not None:
            weight = self.retrain_weight_config.apply(weight, layer_type)
        enable = base.retrain_enable if self.retrain_enable is UNSET else self.retrain_enable
        return LayerConfig(enable, data, weight)

    def to_dict(self) -> dict[str, Any]:
        """The fields it sets, nested as in ``LayerConfig.to_dict``."""
        out: dict[str, Any] = {}
        if self.retrain_enable is not UNSET:
            out["retrain_enable"] = self.retrain_enable
        if self.retrain_data_config is not None:
            out["retrain_data_config"] = self.retrain_data_config.given()
        if self.retrain_weight_config is not None:
            out["retrain_weight_config"] = self.retrain_weight_config.given()
        return out


# ---- the whole configuration --------------------------------------------------------


def _names(value: object, path: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(path, f"expected a list of names, {got(value)}")
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}[{i}]", f"expected a non-empty string, {got(name)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def _rules(value: object, kind: str) -> Mapping[str, LayerOverride]:
    if not isinstance(value, Mapping):
        raise ConfigError(kind, f"expected an object (a dict), {got(value)}")
    for key, override in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(kind, f"expected names as non-empty strings, {got(key)}")
        if not isinstance(override, LayerOverride):
            raise ConfigError(f"{kind}.{key}", f"expected a LayerOverride, {got(override)}")
    return MappingProxyType(dict(value))


def _fixed_min_clip(layer: LayerConfig) -> float | None:
    """The ``clip_min`` that ``fixed_min: true`` leaves unused, if any."""
    d = layer.retrain_data_config
    return d.clip_min if d.fixed_min is True else None


#: The frames from ``_advise`` up to the user's call of ``RetrainConfig.from_dict``:
#: _advise, __post_init__, __init__, the reader, ``from_dict``.
_STACKLEVEL = 6


def _warn_fixed_min(path: str, clip_min: float) -> None:
    warn_at(
        path,
        f"fixed_min=true with clip_min={clip_min!r}: the lower clip is fixed at 0 and "
        "clip_min is not used (as in AMCT)",
        _STACKLEVEL + 1,
    )


@dataclass(frozen=True)
class RetrainSettings:
    """Global defaults, overrides by layer type and by layer name, and skip lists.

    ``for_layer(name, layer_type)`` resolves one layer, field by field: the ``layers``
    override of ``name``, else the ``layer_types`` override of ``layer_type`` (the
    PyTorch class name, ``"Conv2d"``, ``"Linear"``, ...), else ``defaults``. A layer in
    ``skip_layers``, or of a type in ``skip_layer_types``, stays float unless one of its
    overrides sets ``retrain_enable`` itself (AMCT's rule: an override re-enables a
    skipped layer). ``fakequant_precision_mode`` is AMCT's global key (``"DEFAULT"`` or
    ``"FORCE_FP16_QUANT"``, which changes nothing here: qatcore computes in float32).

    ``paths`` (not a field): how the source names places in the warnings; a reader
    passes its own, the canonical names by default.
    """

    defaults: LayerConfig = field(default_factory=LayerConfig)
    layers: Mapping[str, LayerOverride] = field(default_factory=dict)
    layer_types: Mapping[str, LayerOverride] = field(default_factory=dict)
    skip_layers: Sequence[str] = ()
    skip_layer_types: Sequence[str] = ()
    fakequant_precision_mode: str = "DEFAULT"
    paths: InitVar[Paths | None] = None

    def __post_init__(self, paths: Paths | None) -> None:
        if not isinstance(self.defaults, LayerConfig):
            raise ConfigError("defaults", f"expected a LayerConfig, {got(self.defaults)}")
        for name in ("layers", "layer_types"):
            object.__setattr__(self, name, _rules(getattr(self, name), name))
        for name in ("skip_layers", "skip_layer_types"):
            object.__setattr__(self, name, _names(getattr(self, name), name))
        mode = self.fakequant_precision_mode
        if mode not in FAKEQUANT_PRECISION_MODES:
            allowed = ", ".join(map(repr, FAKEQUANT_PRECISION_MODES))
            raise ConfigError("fakequant_precision_mode", f"expected one of {allowed}, {got(mode)}")
        self._advise(CANONICAL if paths is None else paths)

    def _advise(self, paths: Paths) -> None:
        """Warn about settings that work but do not do what they seem to."""
        if self.fakequant_precision_mode == "FORCE_FP16_QUANT":
            warn_at(
                "fakequant_precision_mode",
                "FORCE_FP16_QUANT changes nothing in qatcore, which fake-quantizes in float32",
                _STACKLEVEL,
            )
        section = paths.field("retrain_data_config")
        clip_min = _fixed_min_clip(self.defaults)
        if clip_min is not None:
            _warn_fixed_min(section, clip_min)
        for rules, name_of, by_type in (
            (self.layer_types, paths.layer_type, True),
            (self.layers, paths.layer, False),
        ):
            for key, override in rules.items():
                data = override.retrain_data_config
                if data is None or not {"fixed_min", "clip_min"} & set(data.given()):
                    continue  # warn only where this override sets one of the two
                merged = override.apply(self.defaults, key if by_type else None)
                clip_min = _fixed_min_clip(merged)
                if clip_min is not None:
                    _warn_fixed_min(join_path(name_of(key), section), clip_min)

    def __reduce__(self) -> tuple[Any, ...]:
        # The overrides sit in read-only views, which do not pickle; a copy is rebuilt
        # from checked values without checking (or warning) again.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["layers"], state["layer_types"] = dict(self.layers), dict(self.layer_types)
        return (_restore, (type(self), state))

    def for_layer(self, name: str, layer_type: str | None = None) -> LayerConfig:
        """The fully resolved settings of layer ``name`` of type ``layer_type``."""
        out = self.defaults
        by_type = self.layer_types.get(layer_type) if layer_type is not None else None
        by_name = self.layers.get(name)
        for override in (by_type, by_name):
            if override is not None:
                out = override.apply(out, layer_type)
        decided = any(o is not None and o.retrain_enable is not UNSET for o in (by_type, by_name))
        skipped = name in self.skip_layers or layer_type in self.skip_layer_types
        if skipped and not decided and out.retrain_enable:
            out = replace(out, retrain_enable=False)
        return out


def _restore(cls: type[RetrainSettings], state: dict[str, Any]) -> RetrainSettings:
    out = object.__new__(cls)
    for name, value in state.items():
        if name in ("layers", "layer_types"):
            value = MappingProxyType(value)
        object.__setattr__(out, name, value)
    return out
