"""The ``ulq`` case: the activation ULQ per tensor on a (64, 256, 56, 56) tensor, the
forward into a preallocated output and the fused backward, against PyTorch's
learnable-scale fake quantization (LSQ, forward and backward), whose forward is checked
equal first. The forward moves two tensors, the backward three (x and grad_output in,
grad_input out). ``ForwardBackward`` builds the rows of this case and of ``ulq_weight``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import qatcore
from common import QMAX, QMIN, Row, median_ms, time_copy


@dataclass
class ForwardBackward:
    """A quantizer's forward and backward on preallocated outputs, the number of tensors
    its backward must move at the least (its forward moves two: input in, output out),
    and PyTorch's forward+backward of the same quantizer."""

    forward: Callable[[], object]
    backward: Callable[[], object]
    backward_tensors: int
    torch_name: str
    torch_step: Callable[[], object]

    def rows(
        self, case: str, nbytes: int, copy_ms: float, repeat: int, thread_counts: list[int]
    ) -> list[Row]:
        """At each thread count: qatcore's forward, backward and both in turn, beside
        PyTorch's forward+backward (timed max(3, repeat // 3) times: it is slow)."""

        def both() -> None:
            self.forward()
            self.backward()

        fwd_bytes, bwd_bytes = 2 * nbytes, self.backward_tensors * nbytes
        rows = []
        for n in thread_counts:
            torch.set_num_threads(n)
            qatcore.set_num_threads(n)
            torch_ms = median_ms(self.torch_step, max(3, repeat // 3))
            fwd_ms, bwd_ms = median_ms(self.forward, repeat), median_ms(self.backward, repeat)
            both_ms, both_bytes = median_ms(both, repeat), fwd_bytes + bwd_bytes
            rows += [
                Row(f"{case} fwd", "qatcore", n, fwd_ms, fwd_bytes, copy_ms),
                Row(f"{case} bwd", "qatcore", n, bwd_ms, bwd_bytes, copy_ms),
                Row(f"{case} fwd+bwd", self.torch_name, n, torch_ms, both_bytes, copy_ms),
                Row(f"{case} fwd+bwd", "qatcore", n, both_ms, both_bytes, copy_ms, torch_ms),
            ]
        return rows


def torch_ulq_learnable(
    x: torch.Tensor, g: torch.Tensor, scale: float, zero_point: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PyTorch's learnable-scale fake quantization (LSQ), forward and backward."""
    x.grad = None
    s = torch.tensor([scale], requires_grad=True)
    z = torch.tensor([float(zero_point)], requires_grad=True)
    y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, QMIN, QMAX, 1.0)
    y.backward(g)
    return y, x.grad


def bench_ulq(shape: tuple[int, ...], repeat: int, thread_counts: list[int]) -> list[Row]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    y = np.empty_like(x)
    gx = np.empty_like(x)
    clip_min, clip_max = -2.5, 3.0
    copy_ms = time_copy(x, repeat)
    case = f"ulq per-tensor {shape}"
    rows = [Row(case, "np.copyto", None, copy_ms, 2 * x.nbytes, copy_ms)]
    params = qatcore.ulq_params(clip_min, clip_max)
    xt = torch.from_numpy(x).requires_grad_()
    gt = torch.from_numpy(g)
    y_t, _ = torch_ulq_learnable(xt, gt, float(params.scale), int(params.zero_point))
    np.testing.assert_array_equal(
        y_t.detach().numpy(), qatcore.ulq_forward(x, clip_min, clip_max).output
    )
    del y_t

    def fwd() -> None:
        qatcore.ulq_forward(x, clip_min, clip_max, out=y)

    def bwd() -> None:
        qatcore.ulq_backward(g, x, clip_min, clip_max, out=gx)

    def theirs() -> None:
        torch_ulq_learnable(xt, gt, float(params.scale), int(params.zero_point))

    # backward moves x and grad_output in, grad_input out: three tensors.
    steps = ForwardBackward(fwd, bwd, 3, "torch LSQ", theirs)
    return rows + steps.rows(case, x.nbytes, copy_ms, repeat, thread_counts)


def rows(a: argparse.Namespace) -> list[Row]:
    return bench_ulq((64, 256, 56, 56), max(5, a.repeat // 2), a.threads)
