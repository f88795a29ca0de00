"""AMCT's forms applied to PyTorch models, and the single-op layers AMCT users write."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import require_module

torch = require_module("torch")

from torch import nn  # noqa: E402

import qatcore.torch as qt  # noqa: E402
import reference as ref  # noqa: E402
from qatcore import ConfigError, QuantizationWarning, RetrainConfig  # noqa: E402
from test_amct import AMCT_FLOAT, AMCT_SETTINGS, FIXTURES, NET_LAYERS, load_quietly  # noqa: E402
from torch_helpers import assert_layers_compute_on_the_grid  # noqa: E402


class Net(nn.Module):
    """The six-layer net of the fixtures: Conv2d x3, ConvTranspose2d, Linear x2, on
    (N, 1, 4, 4) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 8 * 8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.layer1(torch.relu(self.conv1(x))))
        return self.head(torch.tanh(self.fc(x.flatten(1))))


def batches(n: int, shape: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)]


def train(model: nn.Module, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """One SGD step per batch on the sum of squares; the outputs, detached."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    outs = []
    model.train()
    for x in xs:
        optimizer.zero_grad()
        out = model(x)
        out.square().sum().backward()
        optimizer.step()
        outs.append(out.detach())
    return outs


def test_a_cfg_quantizes_exactly_the_layers_amct_would() -> None:
    torch.manual_seed(0)
    config = load_quietly(FIXTURES / "net_skip_and_types.cfg")
    assert qt.quantizable_layers(Net()) == NET_LAYERS
    model = qt.prepare_qat(Net(), config)
    layers = qt.quantized_layers(model)
    assert sorted(layers) == sorted(AMCT_SETTINGS)  # conv1, layer1.0, fc, head
    for name, settings in AMCT_SETTINGS.items():
        assert layers[name].layer_config == settings, name
    for name in AMCT_FLOAT:  # layer1.2 (skip_layers), up (skip_layer_types)
        assert type(model.get_submodule(name)) in (nn.Conv2d, nn.ConvTranspose2d), name
    assert isinstance(layers["conv1"], qt.Conv2dQAT) and isinstance(layers["fc"], qt.LinearQAT)
    assert layers["head"].weight_quant.num_bits == 4 and layers["head"].act_quant.num_bits == 16
    # batch_num=2 calibrates, then a trained step; inputs for which clip_max 6 is within
    # the recommended range.
    train(model, [2 * x for x in batches(3, (2, 1, 4, 4))])
    assert all(m.act_quant.calibrated for m in layers.values())
    assert layers["conv1"].act_quant.fixed_min and layers["conv1"].act_quant.clip_min.item() == 0.0
    assert_layers_compute_on_the_grid(model, batches(1, (2, 1, 4, 4), seed=1)[0])
    # prepare_qat takes the file itself too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)
        again = qt.prepare_qat(Net(), FIXTURES / "net_skip_and_types.cfg")
    assert sorted(qt.quantized_layers(again)) == sorted(AMCT_SETTINGS)


def test_a_graph_json_quantizes_only_the_layers_it_lists() -> None:
    model = qt.prepare_qat(Net(), RetrainConfig.load(FIXTURES / "net_partial_graph.json"))
    layers = qt.quantized_layers(model)
    assert sorted(layers) == ["head", "layer1.0"]
    assert layers["head"].weight_quant.scheme.config.channel_wise is False
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear


def test_prepare_qat_checks_the_names_and_types_it_is_given() -> None:
    cases = [
        ({"skip_layers": ["conv9"]}, r"^skip_layers\[0\]: 'conv9': no quantizable layer"),
        ({"layer_types": {"LSTM": {}}}, r"^layer_types\.LSTM: qatcore quantizes .*, not LSTM"),
        ({"skip_layer_types": ["Conv9d"]}, r"^skip_layer_types\[0\]: 'Conv9d' is not a layer"),
        ({"layers": {"layer1.1": {}}}, r"^layers\.layer1\.1: is a ReLU; only Linear, Conv1d"),
    ]
    for doc, message in cases:
        with pytest.raises(ConfigError, match=message):
            qt.prepare_qat(Net(), doc)
    # AMCT's other retrain types may be skipped (they are never quantized here).
    qt.prepare_qat(Net(), {"skip_layer_types": ["LSTM", "GRU"]})
    with pytest.raises(TypeError, match="^config: expected a RetrainConfig"):
        qt.prepare_qat(Net(), 3)


def test_to_amct_json_for_a_model_reads_back_the_same() -> None:
    config = load_quietly(FIXTURES / "net_skip_and_types.cfg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)
        text = qt.to_amct_json(Net(), config)
        back = RetrainConfig.load(text)
    written = json.loads(text)
    assert [k for k in written if k not in ("version", "batch_num")] == list(NET_LAYERS)
    for name, kind in NET_LAYERS.items():
        assert back.for_layer(name, kind) == config.for_layer(name, kind), name
    with pytest.raises(ConfigError, match=r"^layers\.fc\.retrain_weight_config\.channel_wise"):
        qt.to_amct_json(Net())  # qatcore's default is per channel, which AMCT refuses
    per_tensor = {"layer_types": {"Linear": {"retrain_weight_config": {"channel_wise": False}}}}
    assert json.loads(qt.to_amct_json(Net(), per_tensor))["fc"]["retrain_enable"] is True
    skipped = json.loads(qt.to_amct_json(Net(), {"skip_layer_types": ["Linear"]}))
    assert skipped["fc"]["retrain_enable"] is False  # a float Linear needs no per-tensor rule
    assert skipped["fc"]["retrain_weight_config"]["channel_wise"] is False


def test_grouped_transposed_convolutions_have_no_per_channel_axis() -> None:
    with pytest.raises(
        ConfigError, match=r"^retrain_weight_config\.channel_wise: a ConvTranspose2d"
    ):
        qt.ConvTranspose2dQAT(4, 6, 3, groups=2)
    per_tensor = {"retrain_weight_config": {"channel_wise": False}}
    layer = qt.ConvTranspose2dQAT(4, 6, 3, groups=2, config=per_tensor)
    assert layer.weight_quant.scheme.scale_axis is None


# ---- single-op layers -------------------------------------------------------------------------

#: Single-op configurations in the seed's layout, as AMCT's documentation writes them.
SINGLE_OP_CONFIGS = {
    "defaults": None,
    "documented": {
        "retrain_enable": True,
        "retrain_data_config": {
            "dst_type": "INT8",
            "batch_num": 2,
            "fixed_min": False,
            "clip_min": -1.0,
            "clip_max": 1.0,
        },
        "retrain_weight_config": {
            "dst_type": "INT8",
            "weights_retrain_algo": "arq_retrain",
            "channel_wise": False,
        },
    },
    "ulq_retrain": {
        "retrain_data_config": {"batch_num": 1},
        "retrain_weight_config": {"weights_retrain_algo": "ulq_retrain", "channel_wise": True},
    },
    "fixed_min_with_clips": {
        "retrain_data_config": {"fixed_min": True, "clip_max": 2.0, "clip_min": -2.0},
    },
}


@pytest.mark.parametrize("name", list(SINGLE_OP_CONFIGS))
def test_conv2d_qat_from_float_is_the_layer_prepare_qat_makes(name: str, tmp_path: Path) -> None:
    config = SINGLE_OP_CONFIGS[name]
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)
        single = nn.Sequential(qt.Conv2dQAT.from_float(copy.deepcopy(conv), config=config))
        prepared = qt.prepare_qat(nn.Sequential(copy.deepcopy(conv)), config)
    assert type(prepared[0]) is qt.Conv2dQAT
    assert single[0].layer_config == prepared[0].layer_config
    xs = [x / 2 for x in batches(4, (3, 2, 5, 5))]  # the configured clips in range
    for a, b in zip(train(single, xs), train(prepared, xs)):
        assert torch.equal(a, b)
    sa, sb = single.state_dict(), prepared.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
    assert_layers_compute_on_the_grid(single, xs[0])
    ra, rb = qt.export_int8(single)["0"], qt.export_int8(prepared)["0"]
    assert np.array_equal(ra.weight_codes, rb.weight_codes)
    assert ra.weight_params == rb.weight_params and ra.input_params == rb.input_params
    onnx = require_module("onnx")
    require_module("onnxscript")
    exported = qt.export_onnx(single.eval(), xs[0][:1], tmp_path / f"{name}.onnx")
    graph = onnx.load(exported.path).graph
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert np.array_equal(weights["0.weight_int8"], rb.weight_codes)


def test_single_op_layers_take_the_float_arguments_plus_config() -> None:
    layer = qt.LinearQAT(
        4, 3, bias=False, config={"retrain_weight_config": {"channel_wise": False}}
    )
    assert layer.bias is None and layer.weight_quant.scheme.config.channel_wise is False
    conv = qt.Conv1dQAT(2, 3, 3, stride=2, config={"retrain_data_config": {"batch_num": 2}})
    assert conv.stride == (2,) and conv.act_quant.calibrator.config.batch_num == 2
    conv3 = qt.Conv3dQAT(1, 2, (1, 3, 3), padding=(0, 1, 1))
    assert conv3(torch.randn(1, 1, 2, 4, 4)).shape == (1, 2, 2, 4, 4)
    with pytest.raises(TypeError, match="^mod: expected a Conv2d, got Conv1d"):
        qt.Conv2dQAT.from_float(nn.Conv1d(1, 1, 1))
    with pytest.raises(ConfigError, match="^layers: unknown key of a Conv2d layer's config"):
        qt.Conv2dQAT(1, 1, 1, config={"layers": {}})
    with pytest.raises(ConfigError, match=r"^retrain_data_config\.clip_max: expected a finite"):
        qt.Conv2dQAT(1, 1, 1, config={"retrain_data_config": {"clip_max": -1.0}})
    with pytest.raises(TypeError, match="^config: expected None, a dict"):
        qt.Conv2dQAT(1, 1, 1, config="INT8")
    # retrain_enable false: the layer computes in float, and no export takes it.
    off = qt.Conv2dQAT(1, 2, 3, config={"retrain_enable": False})
    x = torch.randn(2, 1, 5, 5)
    assert torch.equal(off(x), nn.functional.conv2d(x, off.weight, off.bias))
    assert qt.quantized_layers(nn.Sequential(off)) == {}


class Upsampler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.vol = nn.Conv3d(1, 2, (2, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(torch.relu(self.conv(x)))  # (N, 4, 2H, 2W)
        return self.vol(y.unsqueeze(1)).flatten(1, 2)


@pytest.mark.parametrize("algo", ["arq_retrain", "ulq_retrain"])
def test_transposed_convolutions_scale_along_weight_axis_1(algo: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    config = {"retrain_weight_config": {"weights_retrain_algo": algo}}
    model = qt.prepare_qat(Upsampler(), config)
    up = model.up
    assert isinstance(up, qt.ConvTranspose2dQAT) and isinstance(model.vol, qt.Conv3dQAT)
    assert up.weight.shape == (3, 4, 3, 3) and up.weight_quant.scheme.axis == 1
    xs = batches(3, (2, 2, 4, 4))
    outs = train(model, xs)
    assert outs[-1].shape == (2, 2 * 3, 8, 8)
    params = up.weight_quant.params(up.weight)
    assert params.axis == 1 and params.scale.shape == (4,)
    if algo == "arq_retrain":  # ARQ's scale per output channel: over axes 0, 2, 3
        _, want = ref.arq(up.weight.detach().numpy(), True, 1, 8)
        assert np.array_equal(params.scale, want)
    else:  # the learned symmetric scale, one per output channel (axis 1)
        assert up.weight_quant.scale.shape == (4,)
        assert np.array_equal(params.scale, up.weight_quant.scale.detach().numpy())
    assert not params.zero_point.any()
    assert_layers_compute_on_the_grid(model, xs[0])
    record = qt.export_int8(model)["up"]
    assert record.layer_type is nn.ConvTranspose2d and record.weight_params.axis == 1
    onnx = require_module("onnx")
    ort = require_module("onnxruntime")
    require_module("onnxscript")
    exported = qt.export_onnx(model.eval(), xs[0], tmp_path / "up.onnx")
    proto = onnx.load(exported.path)
    dq = next(n for n in proto.graph.node if n.name == "up/weight_dequantize")
    assert onnx.helper.get_attribute_value(next(a for a in dq.attribute if a.name == "axis")) == 1
    assert {n.op_type for n in proto.graph.node} >= {"ConvTranspose", "Conv"}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {exported.input_names[0]: xs[0].numpy()})[0]
    with torch.no_grad():
        want = model(xs[0]).numpy()
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_widths_that_an_export_cannot_hold_are_refused(tmp_path: Path) -> None:
    int4 = {"retrain_weight_config": {"dst_type": "INT4"}}
    model = qt.prepare_qat(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), int4)
    train(model, batches(2, (2, 1, 4, 4)))
    records = qt.export_int8(model)
    codes = records["0"].weight_codes
    assert records["0"].weight_params.num_bits == 4 and codes.min() >= -8 and codes.max() <= 7
    assert codes.min() < -2 or codes.max() > 2  # not vacuous: the 4-bit range is used
    path = tmp_path / "int4.onnx"
    with pytest.raises(ValueError, match=r"layer '0' is quantized to \(8, 4\) bits"):
        qt.export_onnx(model.eval(), torch.randn(1, 1, 4, 4), path)
    assert not path.exists()
    wide = {"retrain_data_config": {"dst_type": "INT16"}}
    model16 = qt.prepare_qat(nn.Sequential(nn.Linear(3, 2)), wide)
    train(model16, batches(2, (4, 3)))
    assert model16[0].act_quant.num_bits == 16
    with pytest.raises(ValueError, match=r"^export_int8: layer '0' quantizes its activation to 16"):
        qt.export_int8(model16)
    with pytest.raises(ValueError, match=r"^export_onnx: layer '0' quantizes its activation to 16"):
        qt.export_onnx(model16.eval(), torch.randn(1, 3), tmp_path / "int16.onnx")
    assert not (tmp_path / "int16.onnx").exists()


def test_amct_files_may_name_layers_qatcore_leaves_float() -> None:
    """AMCT retrains LSTM and GRU too; its files for such a model name them. qatcore keeps
    them float: a name in a skip list is accepted, a layer asked to train warns."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GRU(8, 8))
    graph = {
        "version": 1,
        "0": {"retrain_enable": True, "retrain_data_config": {"algo": "ulq_quantize"}},
        "1": {"retrain_enable": True, "retrain_data_config": {"algo": "ulq_quantize"}},
    }
    with pytest.warns(QuantizationWarning, match=r"^layers\.1: qatcore does not quantize GRU"):
        prepared = qt.prepare_qat(model, graph)
    assert isinstance(prepared[0], qt.LinearQAT) and type(prepared[1]) is torch.nn.GRU
    skipped = qt.prepare_qat(model, {"skip_layers": ["1"]})
    assert type(skipped[1]) is torch.nn.GRU


def test_single_op_layers_keep_their_quantizers_on_the_weights_device() -> None:
    config = {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}}
    layer = qt.Conv2dQAT(2, 4, 3, device="meta", config=config)
    states = [*layer.act_quant.parameters(), *layer.weight_quant.parameters()]
    states += list(layer.weight_quant.buffers())
    assert len(states) == 4 and {t.device.type for t in states} == {"meta"}
    moved = qt.LinearQAT.from_float(torch.nn.Linear(3, 2, device="meta"))
    assert moved.act_quant.clip_max.device.type == "meta"
