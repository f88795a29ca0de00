"""qatcore.torch's modules: the fake quantizers, the layers and prepare_qat."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_same_floats, require_module

torch = require_module("torch")

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
import reference as ref  # noqa: E402
from qatcore import ConfigError, RetrainConfig  # noqa: E402
from torch_helpers import (  # noqa: E402
    assert_layers_compute_on_the_grid,
    small_model,
    train_steps,
)


def test_weight_fake_quant_learns_a_positive_scale_along_its_axis() -> None:
    """The scale starts as the weights' ARQ scale along the given axis (1 here, as a
    transposed convolution passes), stays >= EPS whatever the optimizer does, and a
    non-finite scale is refused by name."""
    config = qatcore.RetrainWeightConfig(weights_retrain_algo="ulq_quantize")
    wq = qt.WeightFakeQuant(config, 5, axis=1)
    w = torch.randn(3, 5, 2, 2, generator=torch.Generator().manual_seed(8))
    assert wq.scale.shape == (5,) and not bool(wq.initialized)
    y = wq(w)
    want, arq_scale = ref.arq(w.numpy(), True, 1)
    assert_same_floats(y.detach().numpy(), want)  # the ARQ output at the first step
    assert_same_floats(wq.scale.detach().numpy(), arq_scale)
    assert bool(wq.initialized) and wq.params(w).axis == 1 and not wq.params(w).zero_point.any()
    pushed = torch.tensor([1e-2, 0.0, -1.0, 1e-30, 2e-2])  # as an optimizer step may leave it
    with torch.no_grad():
        wq.scale.copy_(pushed)
    eps = float(np.float32(qatcore._core.EPS))
    used = np.float32([1e-2, eps, eps, eps, 2e-2])
    want = ref.ulq_weight_forward(w.numpy(), used, 8, 1)
    y = wq.eval()(w)  # eval(): the same values used, the parameter left as it is
    assert_same_floats(y.detach().numpy(), want)
    assert torch.equal(wq.scale.detach(), pushed)
    assert_same_floats(wq.params(w).scale, used)  # what export_int8 writes
    y = wq.train()(w)  # train(): projected in place
    assert_same_floats(y.detach().numpy(), want)
    assert_same_floats(wq.scale.detach().numpy(), used)
    with torch.no_grad():
        wq.scale[1] = float("nan")
    with pytest.raises(ValueError, match=r"^weight_quant\.scale: expected finite values"):
        wq(w)


def test_the_weight_scale_floor_is_the_cores(monkeypatch) -> None:
    """WeightFakeQuant applies WeightScheme's floor rule: a raised floor is what a forward
    uses, and a non-finite scale is refused even where every value is above the floor."""
    config = qatcore.RetrainWeightConfig(weights_retrain_algo="ulq_quantize")
    wq = qt.WeightFakeQuant(config, 3)
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(10))
    wq(w)  # the scale starts as ARQ's
    floor = float(wq.scale.detach().max()) * 2
    monkeypatch.setattr(qatcore.WeightScheme, "min_scale", property(lambda self: floor))
    y = wq.eval()(w)
    want = ref.ulq_weight_forward(w.numpy(), np.full(3, floor, np.float32), 8, 0)
    assert_same_floats(y.detach().numpy(), want)
    with torch.no_grad():
        wq.scale[0] = float("inf")
    with pytest.raises(ValueError, match=r"^weight_quant\.scale: expected finite values"):
        wq(w)


def test_prepare_qat_replaces_enabled_layers_only() -> None:
    model = small_model()
    config = RetrainConfig.from_dict(
        {
            "layers": {
                "5": {"retrain_enable": False},
                "3": {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}},
            }
        }
    )
    qat = qt.prepare_qat(model, config)
    assert isinstance(qat[0], qt.Conv1dQAT) and isinstance(qat[3], qt.LinearQAT)
    assert type(qat[5]) is torch.nn.Linear and type(model[0]) is torch.nn.Conv1d  # a copy
    assert qat[3].weight_quant.scheme.algorithm == "ulq_quantize"
    assert set(qt.quantized_layers(qat)) == {"0", "3"}
    with pytest.raises(ConfigError, match=r"^layers.conv9: no layer of that name in the model \("):
        qt.prepare_qat(model, RetrainConfig.from_dict({"layers": {"conv9": {}}}))
    with pytest.raises(
        ConfigError,
        match="^layers.1: is a ReLU; only Linear, Conv1d, Conv2d, Conv3d and ConvTranspose2d",
    ):
        qt.prepare_qat(model, RetrainConfig.from_dict({"layers": {"1": {}}}))


def test_calibration_batches_run_float_then_ifmr_sets_the_clips() -> None:
    model = small_model()
    config = RetrainConfig.from_dict({"retrain_data_config": {"batch_num": 2}})
    qat = qt.prepare_qat(model, config)
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(16, 2, 10, generator=g) for _ in range(3)]
    seen = []
    for m in qt.quantized_layers(qat).values():  # activations pass unchanged while calibrating
        m.act_quant.register_forward_hook(lambda mod, i, o: seen.append(torch.equal(i[0], o)))
    for b in batches[:2]:
        qat(b)
    assert seen == [True] * 6
    act = qat[0].act_quant
    assert act.calibrated
    hist = qatcore.Histogram().observe(np.concatenate([b.numpy() for b in batches[:2]]))
    want = qatcore.ifmr(hist)
    assert (act.clip_min.item(), act.clip_max.item()) == (want.clip_min, want.clip_max)
    assert_layers_compute_on_the_grid(qat, batches[2])
    qat.eval()
    fresh = qt.prepare_qat(model, config).eval()
    with pytest.raises(
        RuntimeError,
        match=r"^forward in eval\(\) mode: layer '0' is not calibrated; run the first "
        r"batch_num=2 batches through the model in train\(\) mode first \(0 so far\)",
    ):
        fresh(batches[0])


def test_clip_gradients_flow_and_the_clips_move_from_their_calibrated_values() -> None:
    """After calibration every learnable clip and weight scale gets a non-zero gradient (a
    clip_min fixed at 0 gets exactly 0) and training moves it away from where IFMR / ARQ
    put it."""
    config = RetrainConfig.from_dict(
        {
            "retrain_data_config": {"batch_num": 1},
            "layers": {"3": {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}}},
        }
    )
    model = qt.prepare_qat(small_model(), config)
    g = torch.Generator().manual_seed(6)
    batches = [torch.randn(16, 2, 10, generator=g) * 2 for _ in range(6)]
    targets = [torch.randint(0, 3, (16,), generator=g) for _ in range(6)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, batches[:1], targets[:1])  # calibration
    clips = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if n.split(".")[-1] in ("clip_min", "clip_max", "scale")
    }
    assert len(clips) == 3 * 2 + 1  # the inputs of layers 0, 3, 5; the weight scale of 3
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(batches[1]), targets[1]).backward()
    fixed = {n: m.act_quant.fixed_min for n, m in qt.quantized_layers(model).items()}
    assert fixed == {"0": False, "3": True, "5": False}  # layer 3 sees a ReLU's output
    for n, p in model.named_parameters():
        if n in clips:
            if n == "3.act_quant.clip_min":
                assert torch.equal(p.grad, torch.zeros_like(p)), n
            else:
                assert p.grad is not None and bool((p.grad != 0).all()), (n, p.grad)
    opt.step()
    train_steps(model, opt, batches[2:], targets[2:])
    for n, p in model.named_parameters():
        if n in clips and n != "3.act_quant.clip_min":
            assert bool((p.detach() != clips[n]).all()), (n, p, clips[n])
    assert model[3].act_quant.clip_min.item() == 0.0
    assert_layers_compute_on_the_grid(model, batches[0])


def test_the_grid_check_fails_without_quantizers(monkeypatch) -> None:
    """assert_layers_compute_on_the_grid catches a layer that skips either quantizer."""
    model = qt.prepare_qat(small_model(), RetrainConfig())
    x = torch.randn(16, 2, 10, generator=torch.Generator().manual_seed(7))
    model(x)  # calibrates
    assert_layers_compute_on_the_grid(model, x)
    for part, what in (("act_quant", "input"), ("weight_quant", "weight")):
        with monkeypatch.context() as m:
            m.setattr(model[3].get_submodule(part), "forward", lambda t: t)
            with pytest.raises(AssertionError, match=f"^3 {what}: "):
                assert_layers_compute_on_the_grid(model, x)
        assert_layers_compute_on_the_grid(model, x)
