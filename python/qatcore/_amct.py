"""AMCT's two other forms of a retrain configuration, read into (and written from) a
``RetrainConfig``: the graph-mode JSON and the ``.cfg`` "simple config".

The ``.cfg`` is protobuf text format, parsed by ``protobuf``'s own text-format parser
against :func:`schema`, which mirrors the retrain part of the ``AMCTRetrainConfig``
message of AMCT's ``retrain_config_pytorch.proto`` (names, numbers, types, defaults).
Its pruning fields are left out: a file that sets one gets an error saying so.

What each form means is AMCT's (read from its sources, ``hicann/amct``):

- graph-mode JSON: a layer the file does not list is not quantized; a listed layer
  without ``retrain_enable`` is; ``algo`` names the algorithm (``ulq_retrain`` for
  weight ULQ); ``channel_wise`` left out is per tensor for ``Linear``, else per channel.
- ``.cfg``: ``skip_layers``/``quant_skip_layers`` and ``skip_layer_types``/
  ``quant_skip_types`` leave layers float; an ``override_layer_configs`` entry (by
  name) or else an ``override_layer_types`` entry (by type) gives a layer its whole
  activation and weight settings (what the entry leaves out is AMCT's default, not the
  global section) and quantizes it even where a skip list names it; ``batch_num`` and
  ``fakequant_precision_mode`` are global.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import (
    ConfigError,
    LayerConfig,
    RetrainConfig,
    _got,
    _mapping,
    _merge,
    _Where,
)

__all__ = ["AMCT_RETRAIN_TYPES", "from_cfg", "from_graph_json", "schema", "to_graph_json"]

#: The layer types AMCT retrains (its ``RETRAIN_TYPES``); qatcore quantizes those of
#: them its registry holds, and accepts the others in skip lists.
AMCT_RETRAIN_TYPES = (
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Linear",
    "ConvTranspose2d",
    "LSTM",
    "GRU",
    "ConvTranspose1d",
)

# ---- the .cfg schema ------------------------------------------------------------------

_PACKAGE = "AMCTPytorchProto"
#: Fields of AMCT's message that configure pruning, which qatcore does not do.
PRUNE_FIELDS = ("prune_config", "regular_prune_skip_layers", "regular_prune_skip_types")
#: Where each message of the schema sits in a file (for error paths).
_MESSAGE_PATHS = {
    "AMCTRetrainConfig": "",
    "RetrainDataQuantConfig": "retrain_data_quant_config",
    "ActULQquantize": "retrain_data_quant_config.ulq_quantize",
    "ClipMaxMin": "retrain_data_quant_config.ulq_quantize.clip_max_min",
    "RetrainWeightQuantConfig": "retrain_weight_quant_config",
    "ARQRetrain": "retrain_weight_quant_config.arq_retrain",
    "WtsULQRetrain": "retrain_weight_quant_config.ulq_retrain",
    "RetrainOverrideLayer": "override_layer_configs",
    "RetrainOverrideLayerType": "override_layer_types",
}


@functools.lru_cache(maxsize=1)
def schema() -> Any:
    """The message class of the retrain part of AMCT's ``AMCTRetrainConfig`` (built once,
    in a descriptor pool of its own)."""
    from google.protobuf import descriptor_pb2, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    optional, required, repeated = F.LABEL_OPTIONAL, F.LABEL_REQUIRED, F.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(
        name="qatcore/amct_retrain_config.proto", package=_PACKAGE, syntax="proto2"
    )

    def enum(parent: Any, name: str, values: dict[str, int]) -> None:
        e = parent.enum_type.add(name=name)
        for key, number in values.items():
            e.value.add(name=key, number=number)

    def message(name: str, *fields: tuple[Any, ...], oneof: str | None = None) -> Any:
        m = proto.message_type.add(name=name)
        if oneof is not None:
            m.oneof_decl.add(name=oneof)
        for field_name, number, label, kind, type_name, default in fields:
            f = m.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
            if default is not None:
                f.default_value = default
            if oneof is not None:
                f.oneof_index = 0
        return m

    enum(proto, "DataType", {"INT4": 0, "INT8": 1, "INT16": 2})
    msg, string, flt, boolean = F.TYPE_MESSAGE, F.TYPE_STRING, F.TYPE_FLOAT, F.TYPE_BOOL
    data, weight = "RetrainDataQuantConfig", "RetrainWeightQuantConfig"
    root = message(
        "AMCTRetrainConfig",
        ("skip_layers", 4, repeated, string, None, None),
        ("skip_layer_types", 6, repeated, string, None, None),
        ("override_layer_configs", 5, repeated, msg, "RetrainOverrideLayer", None),
        ("override_layer_types", 7, repeated, msg, "RetrainOverrideLayerType", None),
        ("batch_num", 1, optional, F.TYPE_UINT32, None, "1"),
        ("retrain_data_quant_config", 2, optional, msg, data, None),
        ("retrain_weight_quant_config", 3, optional, msg, weight, None),
        ("quant_skip_layers", 11, repeated, string, None, None),
        ("quant_skip_types", 12, repeated, string, None, None),
        (
            "fakequant_precision_mode",
            21,
            optional,
            F.TYPE_ENUM,
            "AMCTRetrainConfig.FakequantPrecisionMode",
            None,
        ),
    )
    # AMCT's enum has FORCE_FP16_QUANT = 1 only, and its reader calls 0 DEFAULT.
    enum(root, "FakequantPrecisionMode", {"DEFAULT": 0, "FORCE_FP16_QUANT": 1})
    message(
        data, ("ulq_quantize", 13, optional, msg, "ActULQquantize", None), oneof="data_retrain_algo"
    )
    message(
        "ActULQquantize",
        ("clip_max_min", 1, optional, msg, "ClipMaxMin", None),
        ("fixed_min", 2, optional, boolean, None, None),
        ("dst_type", 3, optional, F.TYPE_ENUM, "DataType", "INT8"),
    )
    message(
        "ClipMaxMin",
        ("clip_max", 3, required, flt, None, None),
        ("clip_min", 5, required, flt, None, None),
    )
    message(
        weight,
        ("arq_retrain", 1, optional, msg, "ARQRetrain", None),
        ("ulq_retrain", 2, optional, msg, "WtsULQRetrain", None),
        oneof="weights_retrain_algo",
    )
    for name in ("ARQRetrain", "WtsULQRetrain"):
        message(
            name,
            ("dst_type", 1, optional, F.TYPE_ENUM, "DataType", "INT8"),
            ("channel_wise", 2, optional, boolean, None, None),
        )
    for name, key in (
        ("RetrainOverrideLayer", "layer_name"),
        ("RetrainOverrideLayerType", "layer_type"),
    ):
        message(
            name,
            (key, 1, required, string, None, None),
            ("retrain_data_quant_config", 2, optional, msg, data, None),
            ("retrain_weight_quant_config", 3, optional, msg, weight, None),
        )
    classes = message_factory.GetMessages([proto])
    return classes[f"{_PACKAGE}.AMCTRetrainConfig"]


def _descriptors(root: Any) -> dict[str, Any]:
    """Every message descriptor of the schema by short name."""
    out: dict[str, Any] = {}
    todo = [root]
    while todo:
        d = todo.pop()
        if d.name not in out:
            out[d.name] = d
            todo.extend(f.message_type for f in d.fields if f.message_type is not None)
    return out


def _path_at(source: str, line: int | None, column: int | None) -> str | None:
    """The dotted path of the field being read at ``line``/``column`` (1-based) of a .cfg
    text: the messages opened before it and the last field name."""
    if line is None or column is None:
        return None
    lines = source.splitlines()
    prefix = "\n".join([*lines[: line - 1], lines[line - 1][: max(column - 1, 0)]])
    stack: list[str] = []
    field: str | None = None
    for m in re.finditer(r"(\w+)\s*:?\s*[{<]|([}>])|(\w+)\s*:", prefix):
        if m.group(1):
            stack.append(m.group(1))
        elif m.group(2):
            if stack:
                stack.pop()
        else:
            field = m.group(3)
    return ".".join([*stack, field]) if field else None


def _parse_error(error: Any, where: str, source: str = "") -> ConfigError:
    """The text-format parser's error as a ``ConfigError``: the field's path, the nearest
    valid name, and the line and column."""
    text = re.sub(r"^\d+:\d+ : ", "", str(error))
    line, column = error.GetLine(), error.GetColumn()
    at = f" ({where}, line {line}, column {column})" if line is not None else f" ({where})"
    descriptors = _descriptors(schema().DESCRIPTOR)
    m = re.search(r'Message type "[\w.]*?(\w+)" has no field named "(\w+)"', text)
    if m:
        owner, name = m.groups()
        path = ".".join(p for p in (_MESSAGE_PATHS.get(owner, owner), name) if p)
        if name in PRUNE_FIELDS:
            return ConfigError(path, f"qatcore does not prune; remove {name}{at}")
        allowed = [f.name for f in descriptors[owner].fields] if owner in descriptors else []
        near = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return ConfigError(path, f"unknown field (allowed: {', '.join(allowed)}){hint}{at}")
    m = re.search(r'Enum type "[\w.]*?(\w+)" has no value named (\w+)', text)
    if m:
        enum_name, value = m.groups()
        root = schema().DESCRIPTOR
        enums = {e.name: e for e in root.file.enum_types_by_name.values()}
        enums.update({e.name: e for e in root.enum_types})
        allowed = [v.name for v in enums[enum_name].values] if enum_name in enums else []
        near = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]}?" if near else ""
        path = _path_at(source, line, column) or enum_name
        return ConfigError(
            path, f"no value named {value} (allowed: {', '.join(allowed)}){hint}{at}"
        )
    return ConfigError(where, f"not valid .cfg text: {text.rstrip('.')}{at}")


# ---- .cfg -> RetrainConfig ------------------------------------------------------------


def _float(value: float) -> float:
    """A float field of the .cfg (float32) as the decimal it was written as: 0.1, not
    0.10000000149011612, so that the same clip resolves alike in every form."""
    return float(str(np.float32(value)))


def _data_section(message: Any, full: bool) -> dict[str, Any]:
    """An ``ActULQquantize`` as a canonical data section. ``full``: an override, which
    AMCT gives its own defaults for what it leaves out."""
    out: dict[str, Any] = {}
    if full:
        out = {"clip_max": None, "clip_min": None, "fixed_min": None, "dst_type": "INT8"}
    ulq = message.ulq_quantize
    if ulq.HasField("clip_max_min"):
        out["clip_max"] = _float(ulq.clip_max_min.clip_max)
        out["clip_min"] = _float(ulq.clip_max_min.clip_min)
    if ulq.HasField("fixed_min"):
        out["fixed_min"] = ulq.fixed_min
    if ulq.HasField("dst_type"):
        out["dst_type"] = (
            ulq.DESCRIPTOR.fields_by_name["dst_type"].enum_type.values_by_number[ulq.dst_type].name
        )
    return out


def _weight_section(message: Any, full: bool) -> dict[str, Any]:
    """A ``RetrainWeightQuantConfig`` as a canonical weight section; ``channel_wise``
    left out is ``None`` (the layer type's default) in an override, absent globally."""
    which = message.WhichOneof("weights_retrain_algo")
    out: dict[str, Any] = {}
    if full:
        out = {"weights_retrain_algo": "arq_retrain", "channel_wise": None, "dst_type": "INT8"}
    if which is None:
        return out
    algo = getattr(message, which)
    out["weights_retrain_algo"] = which  # ulq_retrain is read as ulq_quantize
    if algo.HasField("channel_wise"):
        out["channel_wise"] = algo.channel_wise
    if algo.HasField("dst_type"):
        out["dst_type"] = (
            algo.DESCRIPTOR.fields_by_name["dst_type"]
            .enum_type.values_by_number[algo.dst_type]
            .name
        )
    return out


def _cfg_field(rest: str) -> str:
    """A canonical field path (below a layer) as the ``.cfg`` names it."""
    data, weight = "retrain_data_config", "retrain_weight_config"
    if rest == f"{data}.batch_num":
        return "batch_num"
    if rest.startswith(data):
        tail = rest[len(data) + 1 :]
        if tail in ("clip_max", "clip_min"):
            tail = f"clip_max_min.{tail}"
        return ".".join(p for p in ("retrain_data_quant_config.ulq_quantize", tail) if p)
    if rest.startswith(weight):
        return "retrain_weight_quant_config" + rest[len(weight) :]
    return rest


_CFG_WHERE = _Where(
    layer=lambda name: f"override_layer_configs[{name}]",
    layer_type=lambda name: f"override_layer_types[{name}]",
    field=_cfg_field,
)


def _overrides(entries: Any, key: str, where: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        name = getattr(entry, key)
        if name in out:  # AMCT refuses repeated override entries too
            raise ConfigError(f"{where}[{i}].{key}", f"{name!r} has an earlier entry")
        out[name] = {
            "retrain_enable": True,
            "retrain_data_config": _data_section(entry.retrain_data_quant_config, full=True),
            "retrain_weight_config": _weight_section(entry.retrain_weight_quant_config, full=True),
        }
    return out


def from_cfg(text: str, where: str) -> RetrainConfig:
    """A ``.cfg`` text (read from ``where``) as a ``RetrainConfig`` meaning what AMCT makes
    of it (see the module)."""
    try:
        from google.protobuf import text_format
    except ModuleNotFoundError as e:  # pragma: no cover - protobuf is a dependency
        raise ModuleNotFoundError(
            "reading a .cfg needs protobuf: pip install protobuf", name="google.protobuf"
        ) from e
    message = schema()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise _parse_error(e, where, text) from None
    missing = message.FindInitializationErrors()
    if missing:
        raise ConfigError(missing[0], f"missing: AMCT's schema requires it ({where})")

    top: dict[str, Any] = {"retrain_data_config": {}, "retrain_weight_config": {}}
    if message.HasField("batch_num"):
        top["retrain_data_config"]["batch_num"] = message.batch_num
    if message.HasField("retrain_data_quant_config"):
        top["retrain_data_config"].update(
            _data_section(message.retrain_data_quant_config, full=False)
        )
    weights = _weight_section(message.retrain_weight_quant_config, full=False)
    top["retrain_weight_config"] = weights
    try:
        defaults = _merge(LayerConfig(), top, "", by_type=False)
    except ConfigError as e:
        raise ConfigError(_cfg_field(e.path), e.problem) from None
    layer_types = _overrides(message.override_layer_types, "layer_type", "override_layer_types")
    if "channel_wise" not in weights and "Linear" not in layer_types:
        # The global section leaves channel_wise to each layer type: per tensor for Linear.
        layer_types["Linear"] = {"retrain_weight_config": {"channel_wise": None}}
    mode = "DEFAULT"
    if message.HasField("fakequant_precision_mode"):
        field = message.DESCRIPTOR.fields_by_name["fakequant_precision_mode"]
        mode = field.enum_type.values_by_number[message.fakequant_precision_mode].name
    return RetrainConfig._build(
        _CFG_WHERE,
        defaults=defaults,
        layers=_overrides(message.override_layer_configs, "layer_name", "override_layer_configs"),
        layer_types=layer_types,
        skip_layers=[*message.skip_layers, *message.quant_skip_layers],
        skip_layer_types=[*message.skip_layer_types, *message.quant_skip_types],
        fakequant_precision_mode=mode,
    )


# ---- graph-mode JSON ------------------------------------------------------------------

#: The top-level keys of AMCT's graph-mode JSON that are not layers.
GLOBAL_KEYS = ("version", "batch_num", "fakequant_precision_mode")
#: Keys of a layer's section that configure pruning.
_PRUNE_KEYS = ("regular_prune_enable", "regular_prune_config")


def _graph_field(rest: str) -> str:
    prefix = "retrain_weight_config.weights_retrain_algo"
    return "retrain_weight_config.algo" if rest == prefix else rest


_GRAPH_WHERE = _Where(layer=lambda name: name, field=_graph_field)


def from_graph_json(data: Mapping[str, Any]) -> RetrainConfig:
    """AMCT's graph-mode JSON as a ``RetrainConfig``: a layer it does not list stays float."""
    version = data.get("version")
    if type(version) is not int or version != 1:
        raise ConfigError("version", f"expected 1 (AMCT's graph-mode layout), {_got(version)}")
    top: dict[str, Any] = {"retrain_enable": False}
    if "batch_num" in data:
        top["retrain_data_config"] = {"batch_num": data["batch_num"]}
    try:
        defaults = _merge(LayerConfig(), top, "", by_type=False)
    except ConfigError as e:
        raise ConfigError("batch_num", e.problem) from None
    layers: dict[str, dict[str, Any]] = {}
    for name, value in data.items():
        if name in GLOBAL_KEYS:
            continue
        section = dict(_mapping(value, name))
        for key in _PRUNE_KEYS:
            # "regular_prune_enable": false (AMCT writes it when it also prunes) asks
            # for nothing; anything else asks for pruning.
            if key in section and not (key == "regular_prune_enable" and section[key] is False):
                raise ConfigError(f"{name}.{key}", "qatcore does not prune; remove it")
            section.pop(key, None)
        section.setdefault("retrain_enable", True)
        if "retrain_data_config" in section:
            d = dict(_mapping(section["retrain_data_config"], f"{name}.retrain_data_config"))
            algo = d.pop("algo", "ulq_quantize")
            if algo != "ulq_quantize":
                raise ConfigError(
                    f"{name}.retrain_data_config.algo",
                    f"expected 'ulq_quantize' (AMCT's activation algorithm), {_got(algo)}",
                )
            section["retrain_data_config"] = d
        w = dict(
            _mapping(section.get("retrain_weight_config", {}), f"{name}.retrain_weight_config")
        )
        if "algo" in w:
            w["weights_retrain_algo"] = w.pop("algo")
        w.setdefault("channel_wise", None)  # AMCT's default for the layer's type
        section["retrain_weight_config"] = w
        layers[name] = section
    return RetrainConfig._build(
        _GRAPH_WHERE,
        defaults=defaults,
        layers=layers,
        fakequant_precision_mode=data.get("fakequant_precision_mode", "DEFAULT"),
    )


def to_graph_json(config: RetrainConfig, layers: Mapping[str, str]) -> dict[str, Any]:
    """``config`` resolved for the quantizable ``layers`` (name -> type) as AMCT's
    graph-mode JSON (a dict)."""
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
        if layers[name] == "Linear" and w.channel_wise and layer.retrain_enable:
            raise ConfigError(
                f"layers.{name}.retrain_weight_config.channel_wise",
                "AMCT refuses channel_wise true for Linear layers (per tensor only); set it "
                'false for them, e.g. "layer_types": {"Linear": {"retrain_weight_config": '
                '{"channel_wise": false}}}',
            )
        out[name] = {
            "retrain_enable": layer.retrain_enable,
            "retrain_data_config": data,
            "retrain_weight_config": {
                "algo": "ulq_retrain"
                if w.weights_retrain_algo == "ulq_quantize"
                else "arq_retrain",
                # A Linear left float is written per tensor, the only form AMCT reads.
                "channel_wise": w.channel_wise and layers[name] != "Linear",
                "dst_type": w.dst_type,
            },
        }
    return out
