"""export_int8: typed, frozen per-layer records of a calibrated QAT model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from helpers import assert_same_floats, require_module

torch = require_module("torch")

from torch import nn  # noqa: E402

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
import reference as ref  # noqa: E402
from qatcore import RetrainConfig  # noqa: E402


class Net(nn.Module):
    """Conv1d, Conv2d and two Linear layers, one without bias, over (N, 2, 16) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(2, 4, 3, padding=1)
        self.conv2d = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.fc = nn.Linear(3 * 8 * 16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1d(x)).reshape(-1, 1, 8, 16)
        x = torch.relu(self.conv2d(x))
        return self.head(torch.tanh(self.fc(torch.flatten(x, 1))))


CONFIG = {
    "retrain_data_config": {"batch_num": 2},
    "layers": {
        "conv2d": {
            "retrain_weight_config": {"weights_retrain_algo": "ulq_quantize", "channel_wise": True}
        },
        "fc": {
            "retrain_weight_config": {"weights_retrain_algo": "ulq_quantize", "channel_wise": False}
        },
        "head": {"retrain_weight_config": {"channel_wise": False}},
    },
}


def calibrated() -> nn.Module:
    torch.manual_seed(0)
    model = qt.prepare_qat(Net(), RetrainConfig.from_dict(CONFIG))
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    for _ in range(3):  # two calibrate, the third trains the clips
        opt.zero_grad()
        model(torch.randn(16, 2, 16, generator=g)).square().mean().backward()
        opt.step()
    return model.eval()


def test_records_are_what_the_trained_layers_compute() -> None:
    model = calibrated()
    exported = qt.export_int8(model)
    assert list(exported) == ["conv1d", "conv2d", "fc", "head"]  # named_modules() order
    types = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "fc": nn.Linear, "head": nn.Linear}
    axes = {"conv1d": 0, "conv2d": 0, "fc": None, "head": None}
    for name, e in exported.items():
        layer = model.get_submodule(name)
        assert isinstance(e, qt.Int8Layer) and e.layer_type is types[name], name
        w = layer.weight.detach().numpy()
        assert e.weight_codes.dtype == np.int8 and e.weight_codes.shape == w.shape
        assert e.weight_params.axis == axes[name] and e.weight_params.num_bits == 8
        # Symmetric INT8 weights under every algorithm (ARQ, and ULQ's learned scale).
        assert e.weight_params.zero_point.dtype == np.int32
        assert not e.weight_params.zero_point.any(), (name, e.weight_params.zero_point)
        q_ref, _ = ref.fake_quant(
            w, e.weight_params.scale, e.weight_params.zero_point, 8, e.weight_params.axis
        )
        assert np.array_equal(e.weight_codes, ref.codes(q_ref, 8)), name  # not qatcore.quantize
        # Dequantized, the codes are the weights the layer trains with (ARQ or ULQ).
        assert_same_floats(
            qatcore.dequantize(e.weight_codes, e.weight_params),
            layer.weight_quant(layer.weight).detach().numpy(),
            name,
        )
        # The input: the learned clips, and fake quantization with input_params is what
        # the layer does to its input.
        act = layer.act_quant
        assert (e.input_clip_min, e.input_clip_max) == (act.clip_min.item(), act.clip_max.item())
        x = torch.randn(64) * 3
        assert_same_floats(
            qatcore.fake_quantize(x.numpy(), e.input_params), act(x).detach().numpy(), name
        )
        if layer.bias is None:
            assert e.bias is None, name
        else:
            assert_same_floats(e.bias, layer.bias.detach().numpy(), name)


def test_records_are_frozen_read_only_copies() -> None:
    model = calibrated()
    e = qt.export_int8(model)["conv1d"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.weight_codes = e.weight_codes  # type: ignore[misc]
    for array in (e.weight_codes, e.bias, e.weight_params.scale, e.input_params.zero_point):
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    before = e.bias.copy()
    with torch.no_grad():  # the record does not follow later training
        model.conv1d.bias.add_(1.0)
    assert np.array_equal(e.bias, before)
    text = repr(e)
    assert text.startswith("Int8Layer(Conv1d, weight_codes=int8[4, 2, 3] per channel (axis=0)")
    assert f"zero_point={int(e.input_params.zero_point)}" in text


def test_uncalibrated_layers_are_named_with_the_fix() -> None:
    model = qt.prepare_qat(Net(), RetrainConfig.from_dict(CONFIG))
    model(torch.randn(4, 2, 16))  # one of the two calibration batches
    with pytest.raises(
        RuntimeError,
        match=r"^export_int8: layer 'conv1d' is not calibrated; run the first batch_num=2 "
        r"batches through the model in train\(\) mode first \(1 so far\)$",
    ):
        qt.export_int8(model)
    with pytest.raises(TypeError, match="^model: expected a torch.nn.Module, got dict"):
        qt.export_int8({})


def test_float_and_disabled_layers_are_not_exported() -> None:
    config = RetrainConfig.from_dict({"layers": {"fc": {"retrain_enable": False}}})
    model = qt.prepare_qat(Net(), config)
    model(torch.randn(4, 2, 16))
    assert set(qt.export_int8(model)) == {"conv1d", "conv2d", "head"}
    assert qt.export_int8(Net()) == {}
