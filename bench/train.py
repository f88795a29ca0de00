"""The training-step cases, ``digits`` and ``resnet20``: forward, cross-entropy, backward
and optimizer step on one fixed random batch of 32, for four models built from the same
float weights: FP32; "fp32 + copies", FP32 whose quantizable layers take a copy of their
input and weight (the least any fake quantization that writes the tensor the layer reads
can cost); torch.ao eager QAT; qatcore QAT. Their steps are timed interleaved: after a
warm-up that includes qatcore's calibration batches, R rounds of one step of each in
turn, so drift and warm-up fall on all four alike; each row is the median of its R steps
(5R for the digits CNN, whose step is short). "x copy" is time / the FP32 step; "x faster
than torch" is torch.ao's step / qatcore's. The rows under them are qatcore's added cost
over FP32 as a fraction of torch.ao's, (qatcore - fp32) / (torch.ao - fp32), and of the
copies', with qatcore - fp32 in their ms column. The ResNet-20 model is in zoo.py."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch

import qatcore
from common import Row, interleaved_ms
from zoo import ResNet20, torch_ao_qat_resnet


def training_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
) -> Callable[[], torch.Tensor]:
    """One step on the batch (x, y): forward, cross-entropy, backward, optimizer step;
    returns the loss."""
    opt = optimizer(model.parameters())
    model.train()

    def step() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


class _Copy(torch.autograd.Function):
    """A copy whose gradient passes through unchanged."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _CopiedConv2d(torch.nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(_Copy.apply(x), _Copy.apply(self.weight), self.bias)


class _CopiedLinear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(_Copy.apply(x), _Copy.apply(self.weight), self.bias)


def copy_floor(fp32: torch.nn.Module) -> torch.nn.Module:
    """The FP32 model whose every layer that qatcore quantizes takes a copy of its input
    and of its weight (an autograd Function: clone forward, gradient passed through).
    This is the least any fake quantization costs that writes the tensor the layer
    reads, as qatcore's, torch.ao's and AMCT's all do: one pass over each quantized
    tensor forward, none backward (where a real quantizer must still mask the gradient
    and sum the clip gradients)."""
    from qatcore.torch import quantizable_layers

    model = copy.deepcopy(fp32)
    copied = {torch.nn.Conv2d: _CopiedConv2d, torch.nn.Linear: _CopiedLinear}
    for name, kind in quantizable_layers(model).items():
        layer = model.get_submodule(name)
        if type(layer) not in copied:
            raise TypeError(f"copy_floor: {name} is a {kind}; add a copied twin of it")
        layer.__class__ = copied[type(layer)]
    return model


def qat_step_rows(
    case: str,
    fp32: torch.nn.Module,
    torch_ao_qat: Callable[[torch.nn.Module], torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    thread_counts: list[int],
    warmup: int,
    rounds: int,
) -> list[Row]:
    """FP32, FP32 with copies (copy_floor), torch.ao eager QAT and qatcore QAT of the
    same float weights, their training steps timed interleaved (interleaved_ms) at each
    thread count. qatcore's model is prepared with the default RetrainConfig: every
    Conv and Linear quantized, the first batch_num (1) batches calibrate, so the warm-up
    must cover them.
    "x copy" is time / FP32 time; the last rows are qatcore's added cost over FP32
    as a fraction of torch.ao's and of the copies'."""
    from qatcore.torch import prepare_qat

    rows = []
    for n in thread_counts:
        torch.set_num_threads(n)
        qatcore.set_num_threads(n)
        models = {
            "fp32": copy.deepcopy(fp32),
            "fp32 + copies": copy_floor(fp32),
            "torch.ao QAT": torch_ao_qat(fp32),
            "qatcore QAT": prepare_qat(fp32),
        }
        steps = {name: training_step(m, x, y, optimizer) for name, m in models.items()}
        ms = interleaved_ms(steps, warmup, rounds)
        for name, step in steps.items():  # a diverged model would time NaN paths
            if not torch.isfinite(step()):
                raise RuntimeError(f"{case}: the {name} model diverged; lower the learning rate")
        base, floor = ms["fp32"], ms["fp32 + copies"]
        theirs, ours = ms["torch.ao QAT"], ms["qatcore QAT"]
        rows.append(Row(case, "fp32", n, base, 0, base))
        rows.append(Row(case, "fp32 + copies", n, floor, 0, base))
        rows.append(Row(case, "torch.ao QAT", n, theirs, 0, base))
        rows.append(Row(case, "qatcore QAT", n, ours, 0, base, theirs))
        for other, other_ms in (("torch.ao", theirs), ("the copies", floor)):
            added = f"{(ours - base) / (other_ms - base):.2f}" if other_ms > base else "n/a"
            rows.append(
                Row(
                    f"  added cost over fp32: qatcore / {other} = {added}",
                    "",
                    n,
                    ours - base,
                    0,
                    base,
                )
            )
    return rows


def bench_digits_step(rounds: int, thread_counts: list[int]) -> list[Row]:
    """The demo's digits CNN (8x8 inputs), batch 32, Adam."""
    from qatcore.torch.demo import DigitsNet, torch_ao_qat

    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    return qat_step_rows(
        "qat step, digits CNN, batch 32",
        DigitsNet(),
        torch_ao_qat,
        x,
        y,
        lambda p: torch.optim.Adam(p, lr=1e-3),
        thread_counts,
        warmup=20,
        rounds=rounds,
    )


def bench_resnet20_step(rounds: int, thread_counts: list[int]) -> list[Row]:
    """ResNet-20 on random 32x32 RGB inputs, batch 32, SGD with momentum. Uses only
    torch, qatcore.torch.prepare_qat and qatcore.set_num_threads."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    torch.manual_seed(0)
    fp32 = ResNet20()
    params = sum(p.numel() for p in fp32.parameters())
    return qat_step_rows(
        f"qat step, ResNet-20 ({params / 1e6:.2f}M params), 32x32, batch 32",
        fp32,
        torch_ao_qat_resnet,
        x,
        y,
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
        thread_counts,
        warmup=5,
        rounds=rounds,
    )


def digits_rows(a: argparse.Namespace) -> list[Row]:
    return bench_digits_step(5 * a.rounds, a.threads)


def resnet20_rows(a: argparse.Namespace) -> list[Row]:
    return bench_resnet20_step(a.rounds, a.threads)
