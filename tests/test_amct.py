"""AMCT's three forms of a retrain configuration, and what each means.

The fixtures in ``fixtures/amct`` are written here after the formats of AMCT's
sources, tests and documentation (``hicann/amct``): the ``.cfg`` "simple config" in
protobuf text format, the graph-mode JSON of ``create_quant_retrain_config`` and the
single-op ``config=`` dicts of ``Conv2dQAT`` and friends.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from helpers import run_cli
from qatcore import (
    ConfigError,
    LayerConfig,
    QuantizationWarning,
    RetrainConfig,
    RetrainDataConfig,
    RetrainWeightConfig,
)

FIXTURES = Path(__file__).parent / "fixtures" / "amct"

#: The layers of the six-layer net (tests/test_amct_torch.py builds it), by type.
NET_LAYERS = {
    "conv1": "Conv2d",
    "layer1.0": "Conv2d",
    "layer1.2": "Conv2d",
    "up": "ConvTranspose2d",
    "fc": "Linear",
    "head": "Linear",
}


def layer(data: dict, weight: dict, enable: bool = True) -> LayerConfig:
    return LayerConfig(enable, RetrainDataConfig(**data), RetrainWeightConfig(**weight))


#: What AMCT makes of net_skip_and_types.cfg for that net, read from its
#: _generate_retrain_config: "layer1.2" (skip_layers) and "up" (skip_layer_types) stay
#: float; "fc" (skip_layers) and "head" (quant_skip_layers) are quantized because an
#: override names their type or themselves; an override's sections are whole (what it
#: leaves out is AMCT's default, not the global section); channel_wise left out is per
#: channel for a convolution; batch_num is global.
AMCT_SETTINGS = {
    "conv1": layer(
        {"batch_num": 2, "clip_max": 6.0, "clip_min": -6.0, "fixed_min": True},
        {"weights_retrain_algo": "arq_retrain", "channel_wise": True},
    ),
    "layer1.0": layer(
        {"batch_num": 2, "fixed_min": False},
        {"weights_retrain_algo": "ulq_quantize", "channel_wise": True},
    ),
    "fc": layer(
        {"batch_num": 2, "fixed_min": False},
        {"weights_retrain_algo": "ulq_quantize", "channel_wise": False},
    ),
    "head": layer(
        {"batch_num": 2, "dst_type": "INT16"},
        {"weights_retrain_algo": "arq_retrain", "channel_wise": False, "dst_type": "INT4"},
    ),
}
AMCT_FLOAT = ("layer1.2", "up")


def load_quietly(source: object) -> RetrainConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)
        return RetrainConfig.load(source)  # type: ignore[arg-type]


def resolved(config: RetrainConfig) -> dict[str, LayerConfig]:
    return {name: config.for_layer(name, kind) for name, kind in NET_LAYERS.items()}


# ---- the .cfg ---------------------------------------------------------------------------


def test_cfg_means_what_amct_makes_of_it() -> None:
    with pytest.warns(QuantizationWarning) as record:
        config = RetrainConfig.load(FIXTURES / "net_skip_and_types.cfg")
    got = resolved(config)
    assert sorted(n for n, s in got.items() if s.retrain_enable) == sorted(AMCT_SETTINGS)
    for name, want in AMCT_SETTINGS.items():
        assert got[name] == want, name
    for name in AMCT_FLOAT:
        assert got[name].retrain_enable is False, name
    # The one warning names where fixed_min meets clip_min in the file.
    messages = [str(w.message) for w in record]
    assert messages == [
        "retrain_data_quant_config.ulq_quantize: fixed_min=true with clip_min=-6.0: the lower "
        "clip is fixed at 0 and clip_min is not used (as in AMCT)"
    ]


def test_cfg_is_recognised_by_extension_and_by_content(tmp_path: Path) -> None:
    text = (FIXTURES / "net_skip_and_types.cfg").read_text()
    renamed = tmp_path / "simple.txt"
    renamed.write_text(text)
    want = resolved(load_quietly(FIXTURES / "net_skip_and_types.cfg"))
    for source in (renamed, str(renamed), text):
        assert resolved(load_quietly(source)) == want
    assert RetrainConfig.load("batch_num: 3").defaults.retrain_data_config.batch_num == 3
    with pytest.raises(FileNotFoundError):
        RetrainConfig.load(str(tmp_path / "missing.cfg"))


def test_cfg_channel_wise_left_out_is_per_tensor_for_linear_only() -> None:
    config = RetrainConfig.load(
        "retrain_weight_quant_config: { ulq_retrain: { dst_type: INT8 } }\n"
        'override_layer_configs: { layer_name: "fc2" }\n'
    )
    assert config.for_layer("conv", "Conv2d").retrain_weight_config.channel_wise is True
    assert config.for_layer("fc", "Linear").retrain_weight_config.channel_wise is False
    assert config.for_layer("fc", "Linear").retrain_weight_config.weights_retrain_algo == (
        "ulq_quantize"
    )
    # An override by name is whole: ARQ (AMCT's default), not the global ULQ.
    fc2 = config.for_layer("fc2", "Linear").retrain_weight_config
    assert (fc2.weights_retrain_algo, fc2.channel_wise) == ("arq_retrain", False)
    explicit = RetrainConfig.load(
        "retrain_weight_quant_config: { arq_retrain: { channel_wise: false } }"
    )
    assert explicit.for_layer("c", "Conv2d").retrain_weight_config.channel_wise is False
    assert explicit.layer_types == {}


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        (
            "retrain_data_quant_config: {\n  ulq_quantize: {\n    clip_maxx_min: {}\n  }\n}\n",
            "retrain_data_quant_config.ulq_quantize.clip_maxx_min",
            r"unknown field \(allowed: clip_max_min, fixed_min, dst_type\); "
            r"did you mean 'clip_max_min'\? \(config, line 3, column 5\)",
        ),
        (
            "batch_num: 2\nretrain_weight_quant_config { arq_retrain { dst_type: INT2 } }",
            "retrain_weight_quant_config.arq_retrain.dst_type",
            r"no value named INT2 \(allowed: INT4, INT8, INT16\); did you mean INT8\? "
            r"\(config, line 2",
        ),
        (
            'skip_layer: "fc"',
            "skip_layer",
            r"unknown field .*did you mean 'skip_layers'\? \(config, line 1",
        ),
        ("prune_config: {}", "prune_config", r"qatcore does not prune; remove prune_config"),
        (
            'override_layer_configs {\n layer_name: "a"\n prune_config {}\n}',
            "override_layer_configs.prune_config",
            r"qatcore does not prune; remove prune_config \(config, line 3",
        ),
        (
            'regular_prune_skip_layers: "fc"',
            "regular_prune_skip_layers",
            "qatcore does not prune",
        ),
        (
            "retrain_data_quant_config { ulq_quantize { clip_max_min { clip_max: 1.0 } } }",
            "retrain_data_quant_config.ulq_quantize.clip_max_min.clip_min",
            r"missing: AMCT's schema requires it",
        ),
        (
            'override_layer_configs { layer_name: "c1" retrain_data_quant_config { ulq_quantize '
            "{ clip_max_min { clip_max: -1.0 clip_min: -2.0 } } } }",
            "override_layer_configs[c1].retrain_data_quant_config.ulq_quantize.clip_max_min"
            ".clip_max",
            r"expected a finite number > 0 or null, got -1.0",
        ),
        ("batch_num: 0", "batch_num", r"expected an integer > 0, got 0"),
        (
            'override_layer_types { layer_type: "Linear" }\n'
            'override_layer_types { layer_type: "Linear" }',
            r"override_layer_types[1].layer_type",
            r"'Linear' has an earlier entry",
        ),
        ("batch_num: 1\nbatch_num: 2", "config", r"multiple \"batch_num\" fields.* line 2"),
        (
            "retrain_weight_quant_config { arq_retrain {} ulq_retrain {} }",
            "config",
            r"oneof.* line 1",
        ),
    ],
)
def test_cfg_errors_name_the_field_and_line(text: str, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetrainConfig.load(text)
    assert info.value.path == path, str(info.value)
    assert re.search(problem, info.value.problem), info.value.problem


def test_cfg_prune_file_is_refused_with_its_line() -> None:
    path = FIXTURES / "prune.cfg"
    with pytest.raises(ConfigError, match=r"^prune_config: qatcore does not prune.*line 4") as e:
        RetrainConfig.load(path)
    assert str(path) in str(e.value)


def test_fakequant_precision_mode_in_every_form() -> None:
    with pytest.warns(QuantizationWarning, match="^fakequant_precision_mode: FORCE_FP16_QUANT"):
        cfg = RetrainConfig.load(FIXTURES / "precision_fp16.cfg")
    assert cfg.fakequant_precision_mode == "FORCE_FP16_QUANT"
    with pytest.warns(QuantizationWarning, match="changes nothing in qatcore"):
        graph = RetrainConfig.load({"version": 1, "fakequant_precision_mode": "FORCE_FP16_QUANT"})
    assert graph.fakequant_precision_mode == "FORCE_FP16_QUANT"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DEFAULT is silent
        assert RetrainConfig.load({"fakequant_precision_mode": "DEFAULT"}).defaults == LayerConfig()
    for bad in ("FP16", None, 1):
        with pytest.raises(ConfigError, match="^fakequant_precision_mode: expected one of 'DEF"):
            RetrainConfig.load({"version": 1, "fakequant_precision_mode": bad})
    with pytest.raises(ConfigError, match="^fakequant_precision_mode: no value named FP32"):
        RetrainConfig.load("fakequant_precision_mode: FP32")


# ---- graph-mode JSON --------------------------------------------------------------------


def test_graph_json_quantizes_only_the_layers_it_lists() -> None:
    config = RetrainConfig.load(FIXTURES / "net_partial_graph.json")
    got = resolved(config)
    assert sorted(n for n, s in got.items() if s.retrain_enable) == ["head", "layer1.0"]
    assert got["layer1.0"] == layer(
        {"clip_max": 3.0, "clip_min": -3.0}, {"weights_retrain_algo": "arq_retrain"}
    )
    # channel_wise left out: AMCT's default for a Linear, per tensor.
    assert got["head"] == layer({}, {"channel_wise": False})
    # The canonical layout says so: unlisted layers default to float.
    assert config.to_dict()["retrain_enable"] is False
    assert resolved(RetrainConfig.load(config.to_json())) == got


def test_graph_json_duplicate_keys_are_named(tmp_path: Path) -> None:
    file = tmp_path / "dup.json"
    file.write_text(
        '{"version": 1, "conv1": {"retrain_data_config": {"algo": "ulq_quantize",'
        ' "clip_max": 3.0, "clip_max": 4.0, "clip_min": -1.0}}}'
    )
    with pytest.raises(ConfigError) as info:
        RetrainConfig.load(file)
    assert info.value.path == "conv1.retrain_data_config.clip_max"
    assert "given twice" in info.value.problem and str(file) in info.value.problem
    with pytest.raises(ConfigError, match="^layers: key given twice"):
        RetrainConfig.load('{"layers": {}, "layers": {}}')


def test_graph_json_errors_use_its_paths() -> None:
    cases = [
        ({"version": 1, "batch_num": 0}, "batch_num", "expected an integer > 0"),
        ({"version": 1, "c": {"retrain_data_config": {"clip_max": -1.0}}}, None, None),
        ({"version": 1, "c": []}, "c", "expected an object"),
        (
            {"version": 1, "c": {"retrain_weight_config": {"algo": "arq"}}},
            "c.retrain_weight_config.algo",
            "expected one of 'arq_retrain', 'ulq_quantize'",
        ),
        (
            {"version": 1, "c": {"regular_prune_config": {}}},
            "c.regular_prune_config",
            "qatcore does not prune",
        ),
        (
            {"version": 1, "c": {"regular_prune_enable": True}},
            "c.regular_prune_enable",
            "qatcore does not prune",
        ),
    ]
    for doc, path, problem in cases:
        if path is None:
            with pytest.raises(ConfigError) as info:
                RetrainConfig.load(doc)
            assert info.value.path == "c.retrain_data_config.clip_max"
            continue
        with pytest.raises(ConfigError) as info:
            RetrainConfig.load(doc)
        assert info.value.path == path and problem in info.value.problem, str(info.value)
    # Not pruning is not a request to prune.
    quiet = RetrainConfig.load({"version": 1, "c": {"regular_prune_enable": False}})
    assert quiet.for_layer("c", "Conv2d").retrain_enable is True


def test_fixed_min_with_clip_min_warns_with_the_path_in_each_form() -> None:
    with pytest.warns(QuantizationWarning, match=r"^conv1\.retrain_data_config: fixed_min=true"):
        RetrainConfig.load(FIXTURES / "net_graph.json")
    with pytest.warns(QuantizationWarning, match=r"^retrain_data_config: fixed_min=true"):
        single = RetrainConfig.load(
            json.loads((FIXTURES / "net_single_op.json").read_text())["conv1"]
        )
    d = single.defaults.retrain_data_config
    assert (d.fixed_min, d.clip_min, d.clip_max) == (True, -6.0, 6.0)
    with pytest.warns(QuantizationWarning, match=r"^layers\.a\.retrain_data_config: fixed_min"):
        RetrainConfig.load(
            {"layers": {"a": {"retrain_data_config": {"fixed_min": True, "clip_min": -1.0}}}}
        )
    with pytest.warns(
        QuantizationWarning,
        match=r"^override_layer_configs\[a\]\.retrain_data_quant_config\.ulq_quantize: fixed_min",
    ):
        RetrainConfig.load(
            'override_layer_configs { layer_name: "a" retrain_data_quant_config { ulq_quantize '
            "{ fixed_min: true clip_max_min { clip_max: 2.0 clip_min: -2.0 } } } }"
        )


def test_ulq_retrain_is_ulq_quantize_everywhere() -> None:
    forms = [
        {"retrain_weight_config": {"weights_retrain_algo": "ulq_retrain"}},
        {"layers": {"x": {"retrain_weight_config": {"weights_retrain_algo": "ulq_retrain"}}}},
        {"version": 1, "x": {"retrain_weight_config": {"algo": "ulq_retrain"}}},
        "retrain_weight_quant_config { ulq_retrain {} }",
    ]
    for form in forms:
        w = RetrainConfig.load(form).for_layer("x", "Conv2d").retrain_weight_config
        assert w.weights_retrain_algo == "ulq_quantize", form
    assert RetrainWeightConfig(weights_retrain_algo="ulq_retrain") == RetrainWeightConfig(
        weights_retrain_algo="ulq_quantize"
    )


# ---- the same settings in every form ------------------------------------------------------


def test_the_forms_resolve_identically() -> None:
    cfg = resolved(load_quietly(FIXTURES / "net_skip_and_types.cfg"))
    graph = resolved(load_quietly(FIXTURES / "net_graph.json"))
    canonical = resolved(load_quietly(FIXTURES / "net_canonical.json"))
    single_op = {
        name: load_quietly(d).defaults
        for name, d in json.loads((FIXTURES / "net_single_op.json").read_text()).items()
    }
    for name in NET_LAYERS:
        forms = {"cfg": cfg[name], "graph": graph[name], "canonical": canonical[name]}
        forms["single_op"] = single_op[name]
        enabled = {f: s.retrain_enable for f, s in forms.items()}
        assert len(set(enabled.values())) == 1, (name, enabled)
        if cfg[name].retrain_enable:
            for form, settings in forms.items():
                assert settings == AMCT_SETTINGS[name], (name, form)


# ---- the canonical layout ---------------------------------------------------------------------


def test_precedence_name_over_type_over_defaults_and_skip_lists() -> None:
    config = RetrainConfig.load(
        {
            "retrain_data_config": {"batch_num": 3, "clip_max": 5.0},
            "retrain_weight_config": {"channel_wise": True},
            "layer_types": {
                "Linear": {"retrain_weight_config": {"channel_wise": False, "dst_type": "INT4"}},
                "Conv1d": {"retrain_enable": True},
            },
            "layers": {
                "fc": {"retrain_weight_config": {"dst_type": "INT8"}},
                "kept": {"retrain_enable": True},
                "off": {"retrain_enable": False},
            },
            "skip_layers": ["kept", "skipped"],
            "skip_layer_types": ["Conv2d", "Conv1d"],
        }
    )
    fc = config.for_layer("fc", "Linear")  # name over type over defaults, field by field
    assert fc.retrain_weight_config == RetrainWeightConfig(channel_wise=False, dst_type="INT8")
    assert fc.retrain_data_config == RetrainDataConfig(batch_num=3, clip_max=5.0)
    assert config.for_layer("fc2", "Linear").retrain_weight_config.dst_type == "INT4"
    assert config.for_layer("fc2", None).retrain_weight_config == RetrainWeightConfig()
    # Skip lists leave a layer float unless one of its overrides sets retrain_enable.
    assert config.for_layer("skipped", "Linear").retrain_enable is False
    assert config.for_layer("kept", "Conv2d").retrain_enable is True  # name re-enables
    assert config.for_layer("c", "Conv2d").retrain_enable is False  # skipped type
    assert config.for_layer("c1", "Conv1d").retrain_enable is True  # its type re-enables
    assert config.for_layer("off", "Linear").retrain_enable is False
    assert config.for_layer("other", "Linear").retrain_enable is True


def test_canonical_round_trip_keeps_the_new_fields() -> None:
    doc = json.loads((FIXTURES / "net_canonical.json").read_text())
    doc["fakequant_precision_mode"] = "DEFAULT"
    config = load_quietly(doc)
    again = load_quietly(config.to_json())
    assert again == config and again.to_dict() == config.to_dict()
    assert config.to_dict()["skip_layers"] == ["layer1.2", "fc", "head"]
    assert config.to_dict()["layer_types"]["Linear"]["retrain_enable"] is True
    assert resolved(again) == resolved(config)


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"skip_layers": "fc"}, "skip_layers"),
        ({"skip_layers": ["fc", 3]}, "skip_layers[1]"),
        ({"skip_layer_types": [""]}, "skip_layer_types[0]"),
        (
            {"layer_types": {"Linear": {"retrain_weight_config": {"chanel_wise": True}}}},
            "layer_types.Linear.retrain_weight_config.chanel_wise",
        ),
        ({"layer_types": {"Linear": []}}, "layer_types.Linear"),
        ({"layer_type": {}}, "layer_type"),
        ({"retrain_weight_config": {"channel_wise": None}}, "retrain_weight_config.channel_wise"),
    ],
)
def test_canonical_errors_name_the_path(doc: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetrainConfig.load(doc)
    assert info.value.path == path, str(info.value)
    if path == "layer_type":
        assert "did you mean 'layer_types'?" in info.value.problem


def test_dst_type_takes_amct_widths() -> None:
    for name, bits in (("INT4", 4), ("INT8", 8), ("INT16", 16)):
        assert RetrainDataConfig(dst_type=name).num_bits == bits
        assert RetrainWeightConfig(dst_type=name).num_bits == bits
    with pytest.raises(ConfigError, match="^dst_type: expected one of 'INT4', 'INT8', 'INT16'"):
        RetrainDataConfig(dst_type="INT2")


def test_load_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="^source: expected a path"):
        RetrainConfig.load(3)  # type: ignore[arg-type]


# ---- writing AMCT's graph-mode JSON -------------------------------------------------------


def test_to_amct_lists_every_layer_and_reads_back_the_same() -> None:
    config = load_quietly(FIXTURES / "net_skip_and_types.cfg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)
        written = config.to_amct(NET_LAYERS)
    assert list(written) == ["version", "batch_num", *NET_LAYERS]
    assert written["head"]["retrain_weight_config"] == {
        "algo": "arq_retrain",
        "channel_wise": False,
        "dst_type": "INT4",
    }
    assert written["fc"]["retrain_weight_config"]["algo"] == "ulq_retrain"
    assert written["up"]["retrain_enable"] is False
    again = load_quietly(json.dumps(written))
    assert resolved(again) == resolved(config)


def test_to_amct_refuses_what_its_layout_cannot_hold() -> None:
    with pytest.raises(ConfigError, match=r"^layers\.fc\.retrain_weight_config\.channel_wise: "):
        RetrainConfig().to_amct({"fc": "Linear"})
    one_clip = RetrainConfig.load({"retrain_data_config": {"clip_max": 2.0}})
    with pytest.raises(ConfigError, match=r"^layers\.c\.retrain_data_config: .*together"):
        one_clip.to_amct({"c": "Conv2d"})
    batches = RetrainConfig.load({"layers": {"b": {"retrain_data_config": {"batch_num": 2}}}})
    with pytest.raises(ConfigError, match=r"^batch_num: AMCT's graph-mode JSON has one"):
        batches.to_amct({"a": "Conv2d", "b": "Conv2d"})


# ---- check-config -----------------------------------------------------------------------------


def test_check_config_reads_every_form(tmp_path: Path) -> None:
    single = tmp_path / "single_op.json"
    single.write_text(json.dumps(json.loads((FIXTURES / "net_single_op.json").read_text())["head"]))
    for file in ("net_skip_and_types.cfg", "net_graph.json", "net_canonical.json", single):
        proc = run_cli("check-config", str(FIXTURES / file))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0].endswith(": valid")
    cfg = run_cli("check-config", str(FIXTURES / "net_skip_and_types.cfg")).stdout
    head = next(line for line in cfg.splitlines() if line.startswith("head"))
    assert "data: batch_num=2" in head and "dst_type=INT16" in head and "dst_type=INT4" in head
    assert "skip_layers: layer1.2, fc, head" in cfg
    assert "skip_layer_types: ConvTranspose2d" in cfg
    linear = next(line for line in cfg.splitlines() if line.startswith("type Linear"))
    assert "weights_retrain_algo=ulq_quantize channel_wise=false" in linear
    graph = run_cli("check-config", str(FIXTURES / "net_partial_graph.json")).stdout
    assert "(defaults)" in graph and "retrain_enable=false (stays float)" in graph
    head_row = next(line for line in graph.splitlines() if line.startswith("head"))
    assert "channel_wise=by type (false for Linear)" in head_row
    bad = run_cli("check-config", str(FIXTURES / "prune.cfg"))
    assert bad.returncode == 1 and "prune_config: qatcore does not prune" in bad.stderr
    binary = tmp_path / "binary.cfg"
    binary.write_bytes(b"batch_num: 1\n\xff\xfe\n")
    bad = run_cli("check-config", str(binary))
    assert bad.returncode == 1 and bad.stderr.startswith(f"{binary}: invalid: "), bad.stderr
    assert "Traceback" not in bad.stderr
