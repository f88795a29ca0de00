"""Autograd functions for ARQ, ULQ and weight ULQ.

Each forward and backward runs the implementation that ``_dispatch`` chooses for its
tensors' device and dtype: qatcore's kernels for CPU float32, the SPEC formulas in
PyTorch ops elsewhere (``force_portable()`` chooses those everywhere).
"""

from __future__ import annotations

from typing import Any

import torch

from ._dispatch import implementation


class ArqFunction(torch.autograd.Function):
    """ARQ fake quantization of weights; straight-through backward."""

    @staticmethod
    def forward(
        ctx: Any,
        w: torch.Tensor,
        channel_wise: bool,
        axis: int,
        num_bits: int,
    ) -> torch.Tensor:
        return implementation("arq", w)(w, channel_wise, axis, num_bits)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return grad, None, None, None


class UlqFunction(torch.autograd.Function):
    """ULQ fake quantization with learnable clips (tensors: 0-d, or 1-d along ``axis``)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        clip_min: torch.Tensor,
        clip_max: torch.Tensor,
        fixed_min: bool,
        num_bits: int,
        axis: int | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, clip_min, clip_max)
        ctx.options = (fixed_min, num_bits, axis)
        # The gradient has the output's device and dtype: the backward is chosen now.
        ctx.backward_op = implementation("ulq_backward", x, clip_min, clip_max)
        forward = implementation("ulq_forward", x, clip_min, clip_max)
        return forward(x, clip_min, clip_max, fixed_min, num_bits, axis)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, clip_min, clip_max = ctx.saved_tensors
        grads = ctx.backward_op(grad, x, clip_min, clip_max, *ctx.options)
        return (*grads, None, None, None)


class UlqWeightFunction(torch.autograd.Function):
    """Weight ULQ: fake quantization with a learnable symmetric scale and zero point 0
    (``scale``: 0-d, or 1-d along ``axis``); the weight gradient passes unmasked."""

    @staticmethod
    def forward(
        ctx: Any, w: torch.Tensor, scale: torch.Tensor, num_bits: int, axis: int | None
    ) -> torch.Tensor:
        ctx.save_for_backward(w, scale)
        ctx.options = (num_bits, axis)
        ctx.backward_op = implementation("ulq_weight_backward", w, scale)
        return implementation("ulq_weight_forward", w, scale)(w, scale, num_bits, axis)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        w, scale = ctx.saved_tensors
        return (*ctx.backward_op(grad, w, scale, *ctx.options), None, None)


def arq_fake_quant(
    w: torch.Tensor, *, channel_wise: bool = True, axis: int = 0, num_bits: int = 8
) -> torch.Tensor:
    return ArqFunction.apply(w, channel_wise, axis, num_bits)


def ulq_fake_quant(
    x: torch.Tensor,
    clip_min: torch.Tensor,
    clip_max: torch.Tensor,
    *,
    fixed_min: bool = False,
    num_bits: int = 8,
    axis: int | None = None,
) -> torch.Tensor:
    return UlqFunction.apply(
        x,
        clip_min,
        clip_max,
        fixed_min,
        num_bits,
        axis,
    )


def ulq_weight_fake_quant(
    w: torch.Tensor, scale: torch.Tensor, *, num_bits: int = 8, axis: int | None = None
) -> torch.Tensor:
    return UlqWeightFunction.apply(w, scale, num_bits, axis)
