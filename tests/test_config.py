"""The seed's ten tables, row by row, and the JSON layouts (canonical and AMCT)."""

from __future__ import annotations

import ast
import copy
import json
import math
import pickle
import re
import warnings
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import run_cli
from qatcore import (
    ConfigError,
    LayerConfig,
    QuantizationWarning,
    RetrainConfig,
    RetrainDataConfig,
    RetrainWeightConfig,
)
from qatcore.config import UNSET, DataOverride, LayerOverride, WeightOverride

# ---- defaults (and recommended values) of every table -------------------------------


def test_defaults_follow_the_seed() -> None:
    layer = LayerConfig()
    assert layer.retrain_enable is True  # table 1: recommended true
    d = layer.retrain_data_config
    assert (d.batch_num, d.clip_max, d.clip_min, d.fixed_min, d.dst_type) == (
        1,
        None,
        None,
        None,
        "INT8",
    )
    w = layer.retrain_weight_config
    assert (w.weights_retrain_algo, w.channel_wise, w.dst_type) == ("arq_retrain", True, "INT8")
    assert d.num_bits == w.num_bits == 8


# ---- each table: accepted values, rejected values and their messages -------------------

ACCEPTED = [
    (LayerConfig, "retrain_enable", [True, False]),
    (RetrainDataConfig, "batch_num", [1, 2, 50, 10**6]),
    (RetrainDataConfig, "clip_max", [None, 1e-6, 0.5, 6.0, 3, 1e30]),
    (RetrainDataConfig, "clip_min", [None, -1e-6, -0.5, -6.0, -3, -1e30]),
    (RetrainDataConfig, "fixed_min", [None, True, False]),
    (RetrainDataConfig, "dst_type", ["INT4", "INT8", "INT16"]),
    (RetrainWeightConfig, "weights_retrain_algo", ["arq_retrain", "ulq_quantize"]),
    (RetrainWeightConfig, "channel_wise", [True, False]),
    (RetrainWeightConfig, "dst_type", ["INT4", "INT8", "INT16"]),
]


@pytest.mark.parametrize(("cls", "name", "values"), ACCEPTED)
def test_accepted_values(cls: type, name: str, values: list[object]) -> None:
    for value in values:
        got = getattr(cls(**{name: value}), name)
        assert got == value
        if name.startswith("clip_") and value is not None:
            assert type(got) is float  # JSON integers are read as the float the seed types


REJECTED = [
    (LayerConfig, "retrain_enable", [1, 0, "true", None], "expected true or false"),
    (RetrainDataConfig, "batch_num", [0, -1, 1.0, True, "1", None], "expected an integer > 0"),
    (
        RetrainDataConfig,
        "clip_max",
        [0, 0.0, -1.0, math.inf, math.nan, True, "6"],
        "expected a finite number > 0 or null",
    ),
    (
        RetrainDataConfig,
        "clip_min",
        [0, 0.0, 1.0, -math.inf, math.nan, False, "-6"],
        "expected a finite number < 0 or null",
    ),
    (
        RetrainDataConfig,
        "fixed_min",
        [1, 0, "false"],
        "expected true, false or null \\(decided from calibration data\\)",
    ),
    (
        RetrainDataConfig,
        "dst_type",
        ["INT2", "int8", "INT32", None],
        "expected one of 'INT4', 'INT8', 'INT16'",
    ),
    (
        RetrainWeightConfig,
        "weights_retrain_algo",
        ["ulq", "ARQ", "", None],
        "expected one of 'arq_retrain', 'ulq_quantize'",
    ),
    (RetrainWeightConfig, "channel_wise", [1, "yes", None], "expected true or false"),
    (RetrainWeightConfig, "dst_type", ["INT2", 8], "expected one of 'INT4', 'INT8', 'INT16'"),
]


@pytest.mark.parametrize(("cls", "name", "values", "message"), REJECTED)
def test_rejected_values(cls: type, name: str, values: list[object], message: str) -> None:
    for value in values:
        with pytest.raises(ConfigError, match=rf"^{name}: {message}, got {json_repr(value)}"):
            cls(**{name: value})


def json_repr(value: object) -> str:
    import re

    return re.escape(repr(value))


def test_fixed_min_with_clip_min_is_accepted_with_a_warning() -> None:
    # As AMCT and its documented samples do: the lower clip is 0 (tests/test_amct.py).
    assert RetrainDataConfig(fixed_min=True, clip_min=-1.0).clip_min == -1.0
    with pytest.warns(QuantizationWarning, match="^retrain_data_config: fixed_min=true with"):
        RetrainConfig.from_dict({"retrain_data_config": {"fixed_min": True, "clip_min": -1.0}})
    assert RetrainDataConfig(fixed_min=False, clip_min=-1.0).clip_min == -1.0
    assert RetrainDataConfig(fixed_min=True, clip_max=6.0).fixed_min is True


def test_config_error_is_a_value_error_with_a_path() -> None:
    with pytest.raises(ValueError) as info:
        RetrainConfig.from_dict({"layers": {"conv1": {"retrain_data_config": {"clip_max": -2}}}})
    assert isinstance(info.value, ConfigError)
    assert info.value.path == "layers.conv1.retrain_data_config.clip_max"
    assert str(info.value).startswith(
        "layers.conv1.retrain_data_config.clip_max: expected a finite number > 0 or null, got -2"
    )


@pytest.mark.parametrize(
    ("doc", "path", "hint"),
    [
        ({"retrain_enabled": True}, "retrain_enabled", "retrain_enable"),
        ({"retrain_data_config": {"batchnum": 2}}, "retrain_data_config.batchnum", "batch_num"),
        (
            {"layers": {"fc": {"retrain_weight_config": {"channelwise": True}}}},
            "layers.fc.retrain_weight_config.channelwise",
            "channel_wise",
        ),
        (
            {"layers": {"fc": {"weights_retrain_algo": "arq_retrain"}}},
            "layers.fc.weights_retrain_algo",
            None,
        ),
    ],
)
def test_unknown_keys_suggest_the_nearest(doc: dict, path: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        RetrainConfig.from_dict(doc)
    assert info.value.path == path and "unknown key" in str(info.value)
    if hint:
        assert f"did you mean {hint!r}?" in str(info.value)


# ---- resolution per layer ----------------------------------------------------------------


def test_for_layer_merges_overrides_field_by_field() -> None:
    config = RetrainConfig.from_dict(
        {
            "retrain_data_config": {"batch_num": 4, "clip_max": 6.0},
            "retrain_weight_config": {"channel_wise": False},
            "layers": {
                "conv1": {"retrain_data_config": {"fixed_min": True}},
                "fc": {"retrain_enable": False},
                "head": {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}},
            },
        }
    )
    conv1 = config.for_layer("conv1")
    assert conv1.retrain_data_config == RetrainDataConfig(batch_num=4, clip_max=6.0, fixed_min=True)
    assert conv1.retrain_weight_config.channel_wise is False
    assert config.for_layer("fc").retrain_enable is False
    assert config.for_layer("head").retrain_weight_config == RetrainWeightConfig(
        weights_retrain_algo="ulq_quantize", channel_wise=False
    )
    assert config.for_layer("not_listed") == config.defaults
    with pytest.raises(ConfigError, match="^layers.bad.retrain_data_config.fixed_min: "):
        RetrainConfig.from_dict(
            {
                "retrain_data_config": {"clip_min": -1.0},
                "layers": {"bad": {"retrain_data_config": {"fixed_min": 1}}},
            }
        )


# ---- JSON round trips ----------------------------------------------------------------------

data_sections = st.fixed_dictionaries(
    {},
    optional={
        "batch_num": st.integers(1, 1000),
        "clip_max": st.none() | st.floats(1e-6, 1e6),
        "clip_min": st.none() | st.floats(-1e6, -1e-6),
        "dst_type": st.just("INT8"),
    },
)
weight_sections = st.fixed_dictionaries(
    {},
    optional={
        "weights_retrain_algo": st.sampled_from(["arq_retrain", "ulq_quantize"]),
        "channel_wise": st.booleans(),
        "dst_type": st.just("INT8"),
    },
)
layer_overrides = st.fixed_dictionaries(
    {},
    optional={
        "retrain_enable": st.booleans(),
        "retrain_data_config": data_sections,
        "retrain_weight_config": weight_sections,
    },
)
names = st.text(min_size=1, max_size=12)
configs = st.builds(
    lambda top, layers, types, skip, skip_types: {
        **top,
        "layers": layers,
        "layer_types": types,
        "skip_layers": skip,
        "skip_layer_types": skip_types,
    },
    layer_overrides,
    st.dictionaries(names, layer_overrides, max_size=5),
    st.dictionaries(st.sampled_from(["Conv2d", "Linear", "Conv1d"]), layer_overrides, max_size=3),
    st.lists(names, max_size=3, unique=True),
    st.lists(st.sampled_from(["Conv2d", "Linear"]), max_size=2, unique=True),
)


@given(doc=configs)
def test_json_round_trip_is_exact(doc: dict) -> None:
    with warnings.catch_warnings():  # fixed_min with clip_min may be drawn
        warnings.simplefilter("ignore", QuantizationWarning)
        config = RetrainConfig.load(json.dumps(doc))
        again = RetrainConfig.load(config.to_json())
    assert again == config
    assert again.to_dict() == config.to_dict()
    for name in config.layers:
        for kind in (None, "Conv2d", "Linear"):
            assert again.for_layer(name, kind) == config.for_layer(name, kind)
    assert RetrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["layer_types"] == doc["layer_types"]


def test_load_reads_paths_texts_and_dicts(tmp_path: Path) -> None:
    doc = {"retrain_data_config": {"batch_num": 3}, "layers": {"fc": {"retrain_enable": False}}}
    file = tmp_path / "config.json"
    file.write_text(json.dumps(doc))
    a, b, c = (RetrainConfig.load(x) for x in (file, str(file), json.dumps(doc)))
    assert a == b == c == RetrainConfig.load(doc)
    with pytest.raises(ConfigError, match="^config: not valid JSON"):
        RetrainConfig.load("{not json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"retrain_enable": true,\n "layers": }')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(broken))}: not valid JSON: .* line 2"):
        RetrainConfig.load(broken)


def test_a_lower_clip_of_zero_points_to_fixed_min() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^retrain_data_config\.clip_min: expected a finite number < 0 or null, got 0 "
        r"\(int\); for a lower clip of 0, leave clip_min out and set fixed_min: true$",
    ):
        RetrainConfig.load({"retrain_data_config": {"clip_min": 0}})


# ---- AMCT's layout -------------------------------------------------------------------------

AMCT = {
    "version": 1,
    "batch_num": 2,
    "conv1": {
        "retrain_enable": True,
        "retrain_data_config": {
            "algo": "ulq_quantize",
            "clip_max": 3.0,
            "clip_min": -3.0,
            "fixed_min": False,
            "dst_type": "INT8",
        },
        "retrain_weight_config": {"algo": "arq_retrain", "channel_wise": True, "dst_type": "INT8"},
    },
    "layer2.0.conv": {
        "retrain_enable": True,
        "retrain_data_config": {"algo": "ulq_quantize", "fixed_min": True, "dst_type": "INT8"},
        "retrain_weight_config": {"algo": "ulq_retrain", "channel_wise": False, "dst_type": "INT8"},
    },
    "fc": {"retrain_enable": False},
}

# A graph-mode JSON leaves the layers it does not list float.
CANONICAL_TWIN = {
    "retrain_enable": False,
    "retrain_data_config": {"batch_num": 2},
    "layers": {
        "conv1": {
            "retrain_enable": True,
            "retrain_data_config": {"clip_max": 3.0, "clip_min": -3.0, "fixed_min": False},
        },
        "layer2.0.conv": {
            "retrain_enable": True,
            "retrain_data_config": {"fixed_min": True},
            "retrain_weight_config": {
                "weights_retrain_algo": "ulq_quantize",
                "channel_wise": False,
            },
        },
        "fc": {"retrain_enable": False},
    },
}


def test_amct_layout_resolves_like_its_canonical_twin() -> None:
    amct = RetrainConfig.load(json.dumps(AMCT))
    twin = RetrainConfig.from_dict(CANONICAL_TWIN)
    assert amct.defaults == twin.defaults
    assert set(amct.layers) == set(twin.layers)
    for name in twin.layers:
        assert amct.for_layer(name) == twin.for_layer(name), name
    # Written back, it is canonical and reads back the same.
    assert RetrainConfig.load(amct.to_json()).for_layer("layer2.0.conv") == twin.for_layer(
        "layer2.0.conv"
    )


def test_amct_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="^version: expected 1"):
        RetrainConfig.from_dict({"version": 2})
    bad = {"version": 1, "conv1": {"retrain_data_config": {"algo": "arq_retrain"}}}
    with pytest.raises(ConfigError, match="^conv1.retrain_data_config.algo: expected 'ulq_q"):
        RetrainConfig.from_dict(bad)


# ---- the command line ----------------------------------------------------------------------


def test_check_config_prints_resolved_layers(tmp_path: Path) -> None:
    file = tmp_path / "amct.json"
    file.write_text(json.dumps(AMCT))
    proc = run_cli("check-config", str(file))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(": valid")
    conv1 = next(line for line in lines if line.startswith("conv1"))
    assert "clip_max=3.0" in conv1 and "batch_num=2" in conv1 and "arq_retrain" in conv1
    assert "retrain_enable=false" in next(line for line in lines if line.startswith("fc"))


def test_check_config_fails_with_the_error(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"retrain_weight_config": {"dst_type": "INT2"}}))
    proc = run_cli("check-config", str(file))
    assert proc.returncode == 1
    assert (
        "retrain_weight_config.dst_type: expected one of 'INT4', 'INT8', 'INT16', got 'INT2'"
        in proc.stderr
    )
    missing = run_cli("check-config", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "nope.json" in missing.stderr


# ---- the data model and its modules -----------------------------------------------------


def test_overrides_are_read_once_into_typed_values() -> None:
    config = RetrainConfig.load(
        {
            "layers": {"conv1": {"retrain_data_config": {"fixed_min": True, "clip_max": 3}}},
            "layer_types": {
                "Linear": {
                    "retrain_weight_config": {
                        "weights_retrain_algo": "ulq_retrain",
                        "channel_wise": None,
                    }
                }
            },
        }
    )
    conv1 = config.layers["conv1"]
    assert conv1 == LayerOverride(retrain_data_config=DataOverride(clip_max=3.0, fixed_min=True))
    assert type(conv1.retrain_data_config.clip_max) is float  # type: ignore[union-attr]
    assert conv1.retrain_enable is UNSET and conv1.retrain_weight_config is None
    linear = config.layer_types["Linear"].retrain_weight_config
    assert linear == WeightOverride(weights_retrain_algo="ulq_quantize", channel_wise=None)
    # channel_wise null is AMCT's default for the type the layer has.
    assert config.for_layer("fc", "Linear").retrain_weight_config.channel_wise is False


def test_each_override_names_the_fields_of_its_section() -> None:
    for override, section in (
        (DataOverride, RetrainDataConfig),
        (WeightOverride, RetrainWeightConfig),
        (LayerOverride, LayerConfig),
    ):
        assert [f.name for f in fields(override)] == [f.name for f in fields(section)]


def test_a_config_is_built_from_typed_overrides() -> None:
    config = RetrainConfig(
        layers={"fc": LayerOverride(retrain_enable=False)},
        layer_types={
            "Conv2d": LayerOverride(retrain_weight_config=WeightOverride(dst_type="INT4"))
        },
    )
    assert config.for_layer("fc", "Linear").retrain_enable is False
    assert config.for_layer("c", "Conv2d").retrain_weight_config.dst_type == "INT4"
    with pytest.raises(ConfigError, match=r"^layers\.fc: expected a LayerOverride, got \{"):
        RetrainConfig(layers={"fc": {"retrain_enable": False}})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"^clip_min: expected a finite number < 0 or null"):
        DataOverride(clip_min=1.0)


def test_a_config_copies_and_pickles_without_warning_again() -> None:
    with pytest.warns(QuantizationWarning):
        config = RetrainConfig.load(
            {"layers": {"a": {"retrain_data_config": {"fixed_min": True, "clip_min": -1.0}}}}
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copies = [copy.deepcopy(config), pickle.loads(pickle.dumps(config))]
    for other in copies:
        assert type(other) is RetrainConfig and other == config
        assert other.for_layer("a", "Conv2d") == config.for_layer("a", "Conv2d")
        with pytest.raises(TypeError):
            other.layers["b"] = LayerOverride()  # type: ignore[index]


CONFIG_PACKAGE = Path(__file__).parent.parent / "python" / "qatcore" / "config"


def config_imports() -> dict[str, list[tuple[str, str, bool]]]:
    """Each module of qatcore.config: what it imports (module, name, inside a function)."""
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for file in sorted(CONFIG_PACKAGE.glob("*.py")):
        tree = ast.parse(file.read_text())
        top = set(map(id, tree.body))
        found: list[tuple[str, str, bool]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                found += [(module, a.name, id(node) not in top) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(a.name, "", id(node) not in top) for a in node.names]
        out[file.stem] = found
    return out


def test_the_config_modules_form_no_cycle_and_share_no_private_names() -> None:
    imports = config_imports()
    graph: dict[str, set[str]] = {}
    for module, found in imports.items():
        for source, name, lazy in found:
            assert not name.startswith("_") or name == "annotations", (module, source, name)
            assert not lazy or source.startswith("google.protobuf"), (module, source)
            if source == ".":
                graph.setdefault(module, set()).add(name)
            elif source.startswith(".") and source[1:] in imports:
                graph.setdefault(module, set()).add(source[1:])
    graph.pop("__init__", None)  # the package's front imports everything, nothing imports it

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, " -> ".join((*stack, module))
        for other in graph.get(module, ()):
            visit(other, (*stack, module))

    for module in graph:
        visit(module, ())
    assert "model" not in graph or not graph["model"] & {"canonical", "amct_graph", "amct_cfg"}
