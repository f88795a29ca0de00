"""AMCT's ``.cfg`` "simple config", read: protobuf text format, parsed by ``protobuf``'s
own text-format parser against :func:`schema`, which mirrors the retrain part of the
``AMCTRetrainConfig`` message of AMCT's ``retrain_config_pytorch.proto`` (names,
numbers, types, defaults). Its pruning fields are left out: a file that sets one gets
an error saying so. ``protobuf`` is imported only when a ``.cfg`` is read.

What it means is AMCT's (read from its sources, ``hicann/amct``):
``skip_layers``/``quant_skip_layers`` and ``skip_layer_types``/``quant_skip_types``
leave layers float; an ``override_layer_configs`` entry (by name) or else an
``override_layer_types`` entry (by type) gives a layer its whole activation and weight
settings (what the entry leaves out is AMCT's default, not the global section) and
quantizes it even where a skip list names it; ``batch_num`` and
``fakequant_precision_mode`` are global; ``channel_wise`` left out is AMCT's default
for the layer's type (``amct_types``).
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any, TypeVar

import numpy as np

from .amct_types import PER_TENSOR_TYPES
from .errors import ConfigError, Paths
from .model import (
    DataOverride,
    LayerConfig,
    LayerOverride,
    RetrainDataConfig,
    RetrainSettings,
    RetrainWeightConfig,
    WeightOverride,
)

__all__ = ["PATHS", "PRUNE_FIELDS", "looks_like_cfg", "read", "schema"]

C = TypeVar("C", bound=RetrainSettings)

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

#: A ``.cfg`` text starts with a comment or a field name followed by ``:`` or ``{``.
_CFG_START = re.compile(r"\s*(#|[A-Za-z_]\w*\s*[:{])")


def looks_like_cfg(text: str) -> bool:
    """Whether a string that is not a JSON text is ``.cfg`` text rather than a path."""
    if "\n" in text:
        return True
    looks_like_path = text.endswith((".cfg", ".json")) or "/" in text or "\\" in text
    return not looks_like_path and _CFG_START.match(text) is not None


def _float(value: float) -> float:
    """A float field of the .cfg (float32) as the decimal it was written as: 0.1, not
    0.10000000149011612, so that the same clip resolves alike in every form."""
    return float(str(np.float32(value)))


def _enum_name(message: Any, name: str) -> str:
    field = message.DESCRIPTOR.fields_by_name[name]
    return str(field.enum_type.values_by_number[getattr(message, name)].name)


def _data_fields(message: Any, full: bool) -> dict[str, Any]:
    """An ``ActULQquantize`` as data-section fields. ``full``: an override, which AMCT
    gives its own defaults for what it leaves out (``batch_num`` stays global)."""
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
        out["dst_type"] = _enum_name(ulq, "dst_type")
    return out


def _weight_fields(message: Any, full: bool) -> dict[str, Any]:
    """A ``RetrainWeightQuantConfig`` as weight-section fields; ``channel_wise`` left out
    is ``None`` (the layer type's default) in an override, absent globally."""
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
        out["dst_type"] = _enum_name(algo, "dst_type")
    return out


def _field(rest: str) -> str:
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


PATHS = Paths(
    layer=lambda name: f"override_layer_configs[{name}]",
    layer_type=lambda name: f"override_layer_types[{name}]",
    field=_field,
)


def _section(cls: type, values: dict[str, Any], section: str) -> Any:
    """``cls(**values)``, its errors named below the canonical ``section``."""
    try:
        return cls(**values)
    except ConfigError as e:
        raise e.under(section) from None


def _overrides(entries: Any, key: str, where: str) -> dict[str, LayerOverride]:
    name_of = PATHS.layer_type if key == "layer_type" else PATHS.layer
    out: dict[str, LayerOverride] = {}
    for i, entry in enumerate(entries):
        name = getattr(entry, key)
        if name in out:  # AMCT refuses repeated override entries too
            raise ConfigError(f"{where}[{i}].{key}", f"{name!r} has an earlier entry")
        data = _data_fields(entry.retrain_data_quant_config, full=True)
        weight = _weight_fields(entry.retrain_weight_quant_config, full=True)
        try:
            out[name] = LayerOverride(
                retrain_enable=True,
                retrain_data_config=_section(DataOverride, data, "retrain_data_config"),
                retrain_weight_config=_section(WeightOverride, weight, "retrain_weight_config"),
            )
        except ConfigError as e:
            raise PATHS.locate(e, name_of(name)) from None
    return out


def read(text: str, where: str, cls: type[C]) -> C:
    """A ``.cfg`` text (read from ``where``) as ``cls``, meaning what AMCT makes of it
    (see the module)."""
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

    data: dict[str, Any] = {}
    if message.HasField("batch_num"):
        data["batch_num"] = message.batch_num
    if message.HasField("retrain_data_quant_config"):
        data.update(_data_fields(message.retrain_data_quant_config, full=False))
    weights = _weight_fields(message.retrain_weight_quant_config, full=False)
    try:
        defaults = LayerConfig(
            retrain_data_config=_section(RetrainDataConfig, data, "retrain_data_config"),
            retrain_weight_config=_section(RetrainWeightConfig, weights, "retrain_weight_config"),
        )
    except ConfigError as e:
        raise PATHS.locate(e, "") from None
    layer_types = _overrides(message.override_layer_types, "layer_type", "override_layer_types")
    if "channel_wise" not in weights:
        # The global section leaves channel_wise to each layer type's AMCT default.
        by_type = LayerOverride(retrain_weight_config=WeightOverride(channel_wise=None))
        for kind in PER_TENSOR_TYPES:
            layer_types.setdefault(kind, by_type)
    mode = "DEFAULT"
    if message.HasField("fakequant_precision_mode"):
        mode = _enum_name(message, "fakequant_precision_mode")
    return cls(
        defaults,
        _overrides(message.override_layer_configs, "layer_name", "override_layer_configs"),
        layer_types,
        [*message.skip_layers, *message.quant_skip_layers],
        [*message.skip_layer_types, *message.quant_skip_types],
        mode,
        paths=PATHS,
    )
