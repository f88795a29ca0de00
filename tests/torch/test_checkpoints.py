"""qatcore.torch checkpoints: state_dict, resuming, and what a load checks."""

from __future__ import annotations

import io

import pytest

from helpers import require_module

torch = require_module("torch")

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
from qatcore import RetrainConfig  # noqa: E402
from torch_helpers import assert_same_state, small_model, train_steps  # noqa: E402


@pytest.mark.parametrize("algo", ["arq_retrain", "ulq_quantize"])
def test_checkpoint_resumes_bit_identically(algo: str) -> None:
    """Save, load into a fresh model and optimizer, continue: the result is exactly the
    uninterrupted run's (every parameter, clip, buffer, calibration and optimizer state)."""
    config = RetrainConfig.from_dict(
        {
            "retrain_data_config": {"batch_num": 3},
            "retrain_weight_config": {"weights_retrain_algo": algo},
        }
    )
    g = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 2, 10, generator=g) for _ in range(8)]
    targets = [torch.randint(0, 3, (8,), generator=g) for _ in range(8)]
    probe = torch.randn(5, 2, 10, generator=g)
    whole = qt.prepare_qat(small_model(), config)
    opt_whole = torch.optim.Adam(whole.parameters(), lr=1e-2)
    train_steps(whole, opt_whole, batches, targets)
    for cut in (1, 5):  # mid-calibration, and mid-training
        a = qt.prepare_qat(small_model(), config)
        opt_a = torch.optim.Adam(a.parameters(), lr=1e-2)
        train_steps(a, opt_a, batches[:cut], targets[:cut])
        buf = io.BytesIO()
        torch.save({"model": a.state_dict(), "optimizer": opt_a.state_dict()}, buf)
        del a, opt_a
        buf.seek(0)
        ckpt = torch.load(buf, weights_only=True)
        b = qt.prepare_qat(small_model(), config)
        b.load_state_dict(ckpt["model"])
        opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
        opt_b.load_state_dict(ckpt["optimizer"])
        train_steps(b, opt_b, batches[cut:], targets[cut:])
        assert_same_state(b.state_dict(), whole.state_dict(), f"model (cut {cut})")
        assert_same_state(opt_b.state_dict(), opt_whole.state_dict(), f"optimizer (cut {cut})")
        # In eval() mode: a forward then changes no state (not even a weight scale that
        # the last step left below EPS), so the next cut compares untouched models.
        assert torch.equal(b.eval()(probe), whole.eval()(probe)), cut


def test_a_checkpoint_holds_each_clip_once_and_bad_entries_are_refused() -> None:
    torch.manual_seed(0)
    config = RetrainConfig.load({"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}})
    model = qt.prepare_qat(
        torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 3)),
        config,
    )
    model(torch.randn(8, 2, 4, 4))
    state = model.state_dict()
    # The clips are parameters; the calibration state beside them holds none.
    extra = state["0.act_quant._extra_state"]
    assert extra["calibrated"] is True and not any("clip" in k for k in extra)
    assert state["0.weight_quant.scale"].shape == (4,)
    assert not any("clip" in k for k in state if "weight_quant" in k)
    saved = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    def refused(key: str, value, message: str) -> None:
        bad = dict(state)
        bad[key] = value
        # Values that PyTorch would load before it reaches the bad entry: the layer's own
        # weight, and a later layer's. Neither may change.
        bad["0.weight"] = state["0.weight"] + 1
        bad["2.weight"] = state["2.weight"] + 1
        with pytest.raises(ValueError, match=message):
            model.load_state_dict(bad)
        for k, v in model.state_dict().items():  # nothing changed
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, saved[k]), k

    refused(
        "0.act_quant._extra_state",
        {**extra, "calibrated": "False"},
        r"^0\.act_quant\._extra_state\['calibrated'\]: expected True or False, got 'False'",
    )
    refused(
        "0.act_quant._extra_state",
        {**extra, "observed": [float("nan"), 1.0]},
        r"^0\.act_quant\._extra_state\['observed'\]: expected finite values",
    )
    refused(
        "0.act_quant.clip_max",
        torch.tensor(float("nan")),
        r"^0\.act_quant\.clip_max: expected a finite number, got nan",
    )
    refused(
        "0.weight_quant.scale",
        torch.zeros(3),
        r"^0\.weight_quant\.scale: expected a tensor of shape \(4,\), got \(3,\)",
    )
    refused(
        "0.weight_quant.scale",
        torch.full((4,), float("inf")),
        r"^0\.weight_quant\.scale: expected finite values",
    )
    # Entries the model does not have are PyTorch's to report, under a strict load.
    other = {k: v for k, v in state.items() if k != "0.weight_quant.scale"}
    other["0.weight_quant.clip_min"] = torch.full((4,), -0.5)
    with pytest.raises(
        RuntimeError, match=r'Unexpected key\(s\) in state_dict: "0\.weight_quant\.clip_min"'
    ):
        model.load_state_dict(other)
    # A checkpoint of the earlier layout (clips inside the calibration state) is refused.
    refused(
        "0.act_quant._extra_state",
        {**extra, "clip_min": -1.0, "clip_max": 1.0},
        r"^0\.act_quant\._extra_state: expected the keys .*unknown \['clip_min', 'clip_max'\]",
    )
    # A layer loaded on its own checks its quantizers before its weight, too.
    layer = model[0]
    own = layer.state_dict()
    bad_layer = {**own, "weight": own["weight"] + 1}
    bad_layer["act_quant._extra_state"] = {**extra, "calibrated": "no"}
    with pytest.raises(ValueError, match=r"^act_quant\._extra_state\['calibrated'\]: expected"):
        layer.load_state_dict(bad_layer)
    assert torch.equal(layer.weight, saved["0.weight"])


def test_a_checkpoint_is_checked_once_per_load(monkeypatch) -> None:
    """The model's pre-hook, each layer's and each quantizer's own load find the entries
    an outer check already passed: every entry goes through the core's checks once."""
    config = RetrainConfig.from_dict(
        {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}}
    )
    model = qt.prepare_qat(small_model(), config)
    model(torch.randn(4, 2, 10, generator=torch.Generator().manual_seed(9)))
    calls: dict[str, int] = {}

    def spy(owner, name):
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    spy(qatcore.Calibrator, "load_state_dict")
    spy(qatcore.quantizers, "saved_clip")
    spy(qatcore.weight_quantizer, "saved_scale")
    layers = len(qt.quantized_layers(model))
    cases = [
        (model, layers),  # the prepared model: its hook, then each layer's, then each module
        (torch.nn.ModuleDict({"inner": model}), layers),  # a model that holds it
        (model[0], 1),  # one layer on its own
    ]
    for module, n in cases:
        calls.clear()
        module.load_state_dict(module.state_dict())
        assert calls == {"load_state_dict": n, "saved_clip": 2 * n, "saved_scale": n}, module
    calls.clear()
    model[0].act_quant.load_state_dict(model[0].act_quant.state_dict())  # a quantizer alone
    assert calls == {"load_state_dict": 1, "saved_clip": 2}
    calls.clear()
    model[0].weight_quant.load_state_dict(model[0].weight_quant.state_dict())
    assert calls == {"saved_scale": 1}
