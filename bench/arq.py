"""The ``arq`` case: ARQ per channel (axis 0) on a conv weight (256, 256, 3, 3) and a
Linear weight (4096, 4096), into a preallocated output, against PyTorch's equivalent
(per-channel aminmax, the same scale formula, fake_quantize_per_channel_affine),
checked equal first. Moves twice the tensor: read w, write the output."""

from __future__ import annotations

import argparse

import numpy as np
import torch

import qatcore
from common import QMAX, QMIN, Row, median_ms, time_copy
from qatcore import EPS


def torch_arq_per_channel(w: torch.Tensor) -> torch.Tensor:
    """PyTorch's equivalent of ARQ per channel: amin/amax per channel, the same
    scale formula, then its per-channel fake quantization."""
    lo, hi = torch.aminmax(w.reshape(w.shape[0], -1), dim=1)
    scale = torch.maximum(hi.clamp_min(0) / QMAX, -lo.clamp_max(0) / -QMIN)
    scale = torch.where(scale >= EPS, scale, torch.ones_like(scale))
    zero_point = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, QMIN, QMAX)


def bench_arq(shape: tuple[int, ...], repeat: int, thread_counts: list[int]) -> list[Row]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape, dtype=np.float32)
    out = np.empty_like(w)
    nbytes = 2 * w.nbytes
    case = f"arq per-channel {shape}"
    copy_ms = time_copy(w, repeat)
    rows = [Row(case, "np.copyto", None, copy_ms, nbytes, copy_ms)]
    wt = torch.from_numpy(w)
    expected = qatcore.arq(w).output
    np.testing.assert_array_equal(torch_arq_per_channel(wt).numpy(), expected)
    for n in thread_counts:
        torch.set_num_threads(n)
        qatcore.set_num_threads(n)
        torch_ms = median_ms(lambda: torch_arq_per_channel(wt), repeat)
        ms = median_ms(lambda: qatcore.arq(w, out=out), repeat)
        np.testing.assert_array_equal(out, expected)
        rows.append(Row(case, "torch", n, torch_ms, nbytes, copy_ms))
        rows.append(Row(case, "qatcore", n, ms, nbytes, copy_ms, torch_ms))
    return rows


def rows(a: argparse.Namespace) -> list[Row]:
    return [r for s in [(256, 256, 3, 3), (4096, 4096)] for r in bench_arq(s, a.repeat, a.threads)]
