"""The ``ulq_weight`` case: weight ULQ per channel (axis 0) on a (4096, 4096) weight as
WeightFakeQuant runs it, the forward into a preallocated output and the backward with
out=grad_output (grad_weight is grad_output itself, so the pass only reads w and
grad_output: two tensors), against SPEC "Weight ULQ" written as a PyTorch autograd
graph, checked equal first."""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import qatcore
from common import QMAX, QMIN, Row, time_copy
from ulq import ForwardBackward


def torch_ulq_weight_autograd(
    w: torch.Tensor, scale: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """SPEC "Weight ULQ" per channel (axis 0) written as a PyTorch autograd graph, forward
    and backward: the codes q (rint(t) inside, qmin / qmax outside) and d (rint(t) - t
    inside, qmin / qmax outside) are constants; the output is q * s plus terms that are
    zero in value and give the weight the identity gradient (straight-through, unmasked)
    and the scale d times 1/sqrt(N * qmax). tests/test_ulq_weight.py checks the same
    construction, in float64, against the kernels."""
    w.grad = None
    scale.grad = None
    s = scale.reshape(-1, *[1] * (w.ndim - 1))
    k = 1.0 / math.sqrt(w[0].numel() * QMAX)
    with torch.no_grad():
        t = w * (1.0 / s)
        upper, lower = w > QMAX * s, w < QMIN * s
        r = torch.round(t)
        q = torch.where(upper, QMAX, torch.where(lower, QMIN, r))
        d = torch.where(upper, QMAX, torch.where(lower, QMIN, r - t))
    y = q * s.detach() + (w - w.detach()) + (s - s.detach()) * (k * d)
    y.backward(g)
    return y, w.grad, scale.grad


def bench_ulq_weight(shape: tuple[int, ...], repeat: int, thread_counts: list[int]) -> list[Row]:
    """Weight ULQ per channel (axis 0) as WeightFakeQuant runs it: the forward into a
    preallocated output, the backward with out=grad_output (grad_weight is grad_output
    itself, so the pass only reads w and grad_output)."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(shape, dtype=np.float32) * 0.05).astype(np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    # Start from ARQ's scales, shrunk a little so that some weights clip.
    scale = (qatcore.arq_params(w).scale * np.float32(0.8)).astype(np.float32)
    y = np.empty_like(w)
    copy_ms = time_copy(w, repeat)
    case = f"ulq weight per-channel {shape}"
    rows = [Row(case, "np.copyto", None, copy_ms, 2 * w.nbytes, copy_ms)]
    wt = torch.from_numpy(w).requires_grad_()
    st = torch.from_numpy(scale.copy()).requires_grad_()
    gt = torch.from_numpy(g)
    y_t, gw_t, gs_t = torch_ulq_weight_autograd(wt, st, gt)
    fwd_ref = qatcore.ulq_weight_forward(w, scale, axis=0)
    back_ref = qatcore.ulq_weight_backward(g, w, scale, axis=0)
    np.testing.assert_array_equal(y_t.detach().numpy(), fwd_ref.output)
    np.testing.assert_array_equal(gw_t.numpy(), back_ref.grad_weight)
    np.testing.assert_allclose(gs_t.numpy(), back_ref.grad_scale, rtol=1e-4, atol=1e-6)
    del y_t, gw_t, gs_t

    def fwd() -> None:
        qatcore.ulq_weight_forward(w, scale, axis=0, out=y)

    def bwd() -> None:
        qatcore.ulq_weight_backward(g, w, scale, axis=0, out=g)

    def theirs() -> None:
        torch_ulq_weight_autograd(wt, st, gt)

    # backward reads w and grad_output; grad_weight is grad_output itself.
    steps = ForwardBackward(fwd, bwd, 2, "torch autograd", theirs)
    return rows + steps.rows(case, w.nbytes, copy_ms, repeat, thread_counts)


def rows(a: argparse.Namespace) -> list[Row]:
    return bench_ulq_weight((4096, 4096), a.repeat, a.threads)
