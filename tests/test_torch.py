"""qatcore.torch: autograd functions, prepared models, checkpoints, export, distributed."""

from __future__ import annotations

import io
import os
import socket

import numpy as np
import pytest

from helpers import assert_same_floats, require_module

torch = require_module("torch")

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
import reference as ref  # noqa: E402
from qatcore import ConfigError, RetrainConfig  # noqa: E402


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 10, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 3),
    )


# ---- autograd functions ------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("fixed_min", [False, True])
def test_ulq_function_equals_the_kernels_and_the_portable_path(axis, fixed_min) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 7, generator=g) * 2
    n = 1 if axis is None else x.shape[axis]
    shape = () if axis is None else (n,)
    cmin = (-torch.rand(shape, generator=g) - 0.5).requires_grad_()
    cmax = (torch.rand(shape, generator=g) + 0.5).requires_grad_()
    xg = x.clone().requires_grad_()
    y = qt.ulq_fake_quant(xg, cmin, cmax, fixed_min=fixed_min, axis=axis)
    grad = torch.randn(x.shape, generator=g)
    y.backward(grad)
    want = qatcore.ulq_forward(
        x.numpy(), cmin.detach().numpy(), cmax.detach().numpy(), fixed_min=fixed_min, axis=axis
    )
    grads = qatcore.ulq_backward(
        grad.numpy(),
        x.numpy(),
        cmin.detach().numpy(),
        cmax.detach().numpy(),
        fixed_min=fixed_min,
        axis=axis,
    )
    assert_same_floats(y.detach().numpy(), want.output)
    assert_same_floats(xg.grad.numpy(), grads.grad_input)
    assert_same_floats(cmin.grad.numpy(), grads.grad_clip_min)
    assert_same_floats(cmax.grad.numpy(), grads.grad_clip_max)
    # The portable path (what runs on CUDA), here on CPU float64 to force it.
    y64 = qt.ulq_fake_quant(
        x.double().float(), cmin.detach(), cmax.detach(), fixed_min=fixed_min, axis=axis
    )
    p = qt._functions.portable_ulq_params(cmin.detach(), cmax.detach(), fixed_min, 8)
    portable_y = qt.portable_fake_quant(
        x, p["scale"].reshape(-1), p["zero_point"].reshape(-1), 8, axis
    )
    assert torch.equal(portable_y, y64)  # == treats -0 and +0 alike
    gx, gmin, gmax = qt.portable_ulq_backward(
        grad, x, cmin.detach(), cmax.detach(), fixed_min, 8, axis
    )
    assert torch.equal(gx, xg.grad)
    np.testing.assert_allclose(gmax.numpy(), cmax.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gmin.numpy(), cmin.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_portable_path_runs_for_non_float32_tensors() -> None:
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    y = qt.ulq_fake_quant(
        x, torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    )
    y.sum().backward()
    expect = qatcore.ulq_forward(x.detach().float().numpy(), -1.0, 1.0).output
    assert torch.equal(y.detach().float(), torch.from_numpy(expect))


@pytest.mark.parametrize("channel_wise", [True, False])
def test_arq_function_is_straight_through(channel_wise: bool) -> None:
    w = torch.randn(8, 3, 3, 3, requires_grad=True)
    y = qt.arq_fake_quant(w, channel_wise=channel_wise)
    assert_same_floats(y.detach().numpy(), ref.arq(w.detach().numpy(), channel_wise)[0])
    g = torch.randn(w.shape)
    y.backward(g)
    assert torch.equal(w.grad, g)
    s = qt._functions.portable_arq_scale(w.detach(), channel_wise, 0, 8)
    portable = qt.portable_fake_quant(
        w.detach(), s, torch.zeros_like(s), 8, 0 if channel_wise else None
    )
    assert torch.equal(portable, y.detach())


def test_kernels_take_tensor_memory_without_copies() -> None:
    x = torch.randn(64, 64)
    out = torch.empty_like(x)
    r = qatcore.ulq_forward(x.numpy(), -1.0, 1.0, out=out.numpy())
    assert r.output.ctypes.data == out.data_ptr()


# ---- prepare_qat ----------------------------------------------------------------------------


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
    assert isinstance(qat[0], qt.QuantConv1d) and isinstance(qat[3], qt.QuantLinear)
    assert type(qat[5]) is torch.nn.Linear and type(model[0]) is torch.nn.Conv1d  # a copy
    assert qat[3].weight_quant.scheme.algorithm == "ulq_quantize"
    assert set(qt.quantized_layers(qat)) == {"0", "3"}
    with pytest.raises(ConfigError, match=r"^layers.conv9: no layer of that name in the model \("):
        qt.prepare_qat(model, RetrainConfig.from_dict({"layers": {"conv9": {}}}))
    with pytest.raises(ConfigError, match="^layers.1: is a ReLU; only Conv1d, Conv2d and Linear"):
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
    assert not torch.equal(qat(batches[2]), model(batches[2]))
    qat.eval()
    fresh = qt.prepare_qat(model, config).eval()
    with pytest.raises(
        RuntimeError,
        match=r"^forward in eval\(\) mode: layer '0' is not calibrated; run the first "
        r"batch_num=2 batches through the model in train\(\) mode first \(0 so far\)",
    ):
        fresh(batches[0])


def train_steps(model, optimizer, batches, targets):
    for b, t in zip(batches, targets):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(b), t).backward()
        optimizer.step()


@pytest.mark.parametrize("algo", ["arq_retrain", "ulq_quantize"])
def test_checkpoint_resumes_bit_identically(algo: str) -> None:
    config = RetrainConfig.from_dict(
        {
            "retrain_data_config": {"batch_num": 3},
            "retrain_weight_config": {"weights_retrain_algo": algo},
        }
    )
    g = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 2, 10, generator=g) for _ in range(8)]
    targets = [torch.randint(0, 3, (8,), generator=g) for _ in range(8)]
    for cut in (1, 5):  # mid-calibration, and mid-training
        a = qt.prepare_qat(small_model(), config)
        opt_a = torch.optim.Adam(a.parameters(), lr=1e-2)
        train_steps(a, opt_a, batches[:cut], targets[:cut])
        buf = io.BytesIO()
        torch.save({"model": a.state_dict(), "optimizer": opt_a.state_dict()}, buf)
        buf.seek(0)
        ckpt = torch.load(buf, weights_only=True)
        b = qt.prepare_qat(small_model(), config)
        b.load_state_dict(ckpt["model"])
        opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
        opt_b.load_state_dict(ckpt["optimizer"])
        train_steps(a, opt_a, batches[cut:], targets[cut:])
        train_steps(b, opt_b, batches[cut:], targets[cut:])
        probe = torch.randn(5, 2, 10, generator=g)
        assert torch.equal(a(probe), b(probe)), cut
        assert a[0].act_quant.clip_max.item() == b[0].act_quant.clip_max.item()


# ---- distributed ------------------------------------------------------------------------------


def _rank_main(rank: int, world: int, port: int, batches, result_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=__import__("datetime").timedelta(seconds=60),
    )
    try:
        config = RetrainConfig.from_dict({"retrain_data_config": {"batch_num": 2}})
        model = qt.prepare_qat(small_model(), config)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        mine = batches[rank * 2 : (rank + 1) * 2]
        with torch.no_grad():
            for b in mine:
                ddp(b)
        clips = {
            n: (m.act_quant.clip_min.item(), m.act_quant.clip_max.item())
            for n, m in qt.quantized_layers(model).items()
        }
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for b in mine:
            opt.zero_grad()
            ddp(b).square().mean().backward()
            opt.step()
        trained = [p.detach().clone() for p in model.parameters()]
        torch.save({"clips": clips, "trained": trained}, os.path.join(result_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_calibration_merges_histograms(tmp_path) -> None:
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(8, 2, 10, generator=g) * (1 + i) for i in range(4)]
    ctx = mp.start_processes(
        _rank_main,
        args=(2, free_port(), batches, str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = 120.0
    import time

    t0 = time.monotonic()
    while not ctx.join(timeout=5):
        if time.monotonic() - t0 > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the 2-process run did not finish in time")
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["clips"] == r1["clips"]
    single = qt.prepare_qat(
        small_model(), RetrainConfig.from_dict({"retrain_data_config": {"batch_num": 4}})
    )
    with torch.no_grad():
        for b in batches:
            single(b)
    want = {
        n: (m.act_quant.clip_min.item(), m.act_quant.clip_max.item())
        for n, m in qt.quantized_layers(single).items()
    }
    assert r0["clips"] == want
    for a, b in zip(r0["trained"], r1["trained"]):  # clips and weights train in lockstep
        assert torch.equal(a, b)


def test_a_checkpoint_holds_each_clip_once_and_bad_entries_are_refused() -> None:
    torch.manual_seed(0)
    config = RetrainConfig.from_json(
        {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}}
    )
    model = qt.prepare_qat(
        torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 3)),
        config,
    )
    model(torch.randn(8, 2, 4, 4))
    state = model.state_dict()
    # The clips are parameters; the calibration state beside them holds none.
    extra = state["0.act_quant._extra_state"]
    assert extra["calibrated"] is True and not any("clip" in k for k in extra)
    assert state["0.weight_quant.clip_max"].shape == (4,)
    saved = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    def refused(key: str, value, message: str) -> None:
        bad = dict(state)
        bad[key] = value
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
        r"^0\.act_quant\.clip_max: expected finite values",
    )
    refused(
        "0.weight_quant.clip_min",
        torch.zeros(3),
        r"^0\.weight_quant\.clip_min: expected a tensor of shape \(4,\), got \(3,\)",
    )
    # A checkpoint of the earlier layout (clips inside the calibration state) is refused.
    refused(
        "0.act_quant._extra_state",
        {**extra, "clip_min": -1.0, "clip_max": 1.0},
        r"^0\.act_quant\._extra_state: expected the keys .*unknown \['clip_min', 'clip_max'\]",
    )
