"""The digits demo, ``python -m qatcore.torch.demo`` (the README's first command)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import require_module

torch = require_module("torch")
require_module("sklearn")

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
from qatcore.torch import demo  # noqa: E402
from torch_helpers import assert_layers_compute_on_the_grid  # noqa: E402


def test_demo_int8_accuracy_is_within_one_point_of_fp32(digits_demo) -> None:
    r = digits_demo
    assert r.fp32_accuracy > 95.0
    assert r.qat_accuracy >= r.fp32_accuracy - 1.0, (r.qat_accuracy, r.fp32_accuracy)
    assert r.qat_accuracy >= r.torch_qat_accuracy - 0.5, (r.qat_accuracy, r.torch_qat_accuracy)


def test_demo_with_ulq_weights_is_within_one_point_of_fp32(digits_demo, digits_demo_ulq) -> None:
    """``--weights ulq_quantize``: the same FP32 model, every layer's weight scale learned
    from its ARQ start, symmetric (zero point 0), and INT8 accuracy within a point."""
    r = digits_demo_ulq
    assert r.fp32_model is digits_demo.fp32_model  # the same float model, trained once
    assert r.qat_accuracy >= r.fp32_accuracy - 1.0, (r.qat_accuracy, r.fp32_accuracy)
    model = r.model.eval()
    assert_layers_compute_on_the_grid(model, r.data.x_test[:64])
    for name, layer in qt.quantized_layers(model).items():
        wq = layer.weight_quant
        assert wq.scheme.learns_scale, name
        # The scale started as the ARQ scale of the FP32 weights, and training moved it in
        # every channel whose weights it moved (a channel behind a dead ReLU gets no
        # gradient at all).
        float_weight = r.fp32_model.get_submodule(name).weight.detach().numpy()
        start = qatcore.arq_params(float_weight).scale
        trained = (layer.weight.detach().numpy() != float_weight).reshape(len(start), -1)
        moved = trained.any(axis=1)
        assert moved.sum() > len(moved) // 4, (name, moved)
        assert (wq.scale.detach().numpy()[moved] != start[moved]).all(), name
    for name, e in qt.export_int8(model).items():
        assert not e.weight_params.zero_point.any(), name


def test_demo_model_is_quantized_and_its_clips_were_learned(digits_demo) -> None:
    """What a quantizer that did nothing would fail: each layer computes on the grid,
    and every activation clip moved away from the value IFMR calibrated it to."""
    model = digits_demo.model.eval()
    layers = qt.quantized_layers(model)
    assert set(layers) == {"conv1", "conv2", "fc1", "fc2"}
    assert_layers_compute_on_the_grid(model, digits_demo.data.x_test[:64])
    for name, layer in layers.items():
        act = layer.act_quant
        start = act.calibrator.last_ifmr  # the calibration's IFMR result
        assert start is not None and start.clip_max > 0, name
        assert act.clip_max.item() != np.float32(start.clip_max), name
        if act.fixed_min:  # conv1 sees pixels in [0, 1], the others ReLUs
            assert act.clip_min.item() == 0.0, name
        else:
            assert act.clip_min.item() != np.float32(start.clip_min), name


def test_help_names_the_command_and_every_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qatcore.torch.demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = " ".join(done.stdout.split())  # argparse wraps to the terminal width
    assert text.startswith("usage: python -m qatcore.torch.demo [-h] [--epochs N]"), text
    for option, default in [
        ("--epochs N", "default: 15"),
        ("--qat-epochs N", "default: 4"),
        ("--threads N", "default: each library's own"),
        ("--seed N", "default: 0"),
        ("--weights ALGO", "default: arq_retrain"),
        ("--plot FILE", "default: no plot"),
        ("--onnx FILE", "default: no export"),
    ]:
        after = text.split(f" {option} ", 1)[1]
        assert f"({default})" in after.split(" --", 1)[0], option
    assert (demo.EPOCHS, demo.QAT_EPOCHS, demo.SEED) == (15, 4, 0)  # what run() uses too


@pytest.mark.parametrize("module", ["onnx", "onnxscript", "onnxruntime"])
def test_onnx_without_its_packages_fails_before_training(module, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.setattr(demo, "run", lambda *a: pytest.fail("trained before the check"))
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--onnx", "digits.onnx"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--onnx needs {module}, which is not installed; install it with " in err
    assert "pip install 'qatcore[demo]'" in err


def test_missing_demo_packages_name_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ModuleNotFoundError, match=r"^the digits demo needs sklearn\.datasets"):
        demo.load_digits()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'qatcore\[demo\]'$"):
        demo.onnx_accuracy("m.onnx", torch.zeros(1), torch.zeros(1), integer_kernels=False)
