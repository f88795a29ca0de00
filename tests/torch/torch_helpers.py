"""Models, training loops and checks shared by the PyTorch test modules."""

from __future__ import annotations

import numpy as np
import torch

import qatcore.torch as qt
import reference as ref
from helpers import assert_same_floats


class LayerOps(torch.overrides.TorchFunctionMode):
    """Records the input and the weight that each quantized layer's convolution or matrix
    product receives: what the model computes with, after whatever its forward did."""

    OPS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d")

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.current: str | None = None
        self.seen: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.float_inputs: dict[str, torch.Tensor] = {}
        self.hooks = []
        for name, layer in qt.quantized_layers(model).items():
            self.hooks.append(layer.register_forward_pre_hook(self._enter(name)))
            self.hooks.append(layer.register_forward_hook(self._leave))

    def _enter(self, name: str):
        def hook(module, args) -> None:
            self.current = name
            self.float_inputs[name] = args[0].detach().clone()

        return hook

    def _leave(self, module, args, out) -> None:
        self.current = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.current is not None and getattr(func, "__name__", "") in self.OPS:
            x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            self.seen[self.current] = (
                self.float_inputs[self.current],
                x.detach().clone(),
                w.detach().clone(),
            )
        return func(*args, **kwargs)

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def assert_layers_compute_on_the_grid(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Every quantized layer's input and weight, as its convolution or product receives
    them, are exactly reference.py's fake quantization of the float input (ULQ with the
    layer's clips) and of the float weight (ARQ, or weight ULQ with the learned scale):
    values on the quantization grid, and the right ones. A layer whose quantizer is
    skipped, or does nothing, fails here."""
    ops = LayerOps(model)
    try:
        with torch.no_grad(), ops:
            model(x)
    finally:
        ops.remove()
    layers = qt.quantized_layers(model)
    assert set(ops.seen) == set(layers), (set(ops.seen), set(layers))
    for name, layer in layers.items():
        x_float, x_seen, w_seen = (t.numpy() for t in ops.seen[name])
        act = layer.act_quant
        bits = act.num_bits
        want_x, _ = ref.ulq_forward(
            x_float, act.clip_min.item(), act.clip_max.item(), act.fixed_min, bits
        )
        assert_same_floats(x_seen, want_x, f"{name} input")
        cfg, axis = layer.weight_quant.scheme.config, layer.weight_quant.scheme.axis
        w = layer.weight.detach().numpy()
        axis = layer.weight_quant.scheme.axis
        if cfg.weights_retrain_algo == "arq_retrain":
            want_w, _ = ref.arq(w, cfg.channel_wise, axis, cfg.num_bits)
        else:
            want_w = ref.ulq_weight_forward(
                w,
                layer.weight_quant.scale.detach().numpy(),
                cfg.num_bits,
                axis if cfg.channel_wise else None,
            )
        assert_same_floats(w_seen, want_w, f"{name} weight")
        # Not vacuous: the float values are off the grid.
        assert not np.array_equal(x_float, want_x) and not np.array_equal(w, want_w), name


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


def train_steps(model, optimizer, batches, targets) -> list[float]:
    """One optimizer step per batch; the losses."""
    losses = []
    for b, t in zip(batches, targets):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(b), t)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def assert_same_state(a, b, where: str = "state") -> None:
    """Equal state dicts, optimizer states included: every tensor the same bits."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (
            a.is_floating_point()
            and torch.equal(
                a.view(torch.int32 if a.dtype == torch.float32 else torch.int64),
                b.view(torch.int32 if b.dtype == torch.float32 else torch.int64),
            )
        ), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same_state(u, v, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, (where, a, b)
