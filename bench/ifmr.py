"""The ``ifmr`` case: ``Histogram().observe`` on a (64, 256, 56, 56) tensor (it reads the
tensor once for min/max and once to bin it; counted as one read) against torch.ao's
HistogramObserver(bins=2048), then IFMR's search on the histogram (61 candidates)."""

from __future__ import annotations

import argparse
import functools

import numpy as np
import torch

import qatcore
from common import Row, median_ms, time_copy


def bench_ifmr(shape: tuple[int, ...], repeat: int, thread_counts: list[int]) -> list[Row]:
    from torch.ao.quantization import HistogramObserver

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    copy_ms = time_copy(x, repeat)
    case = f"histogram.observe {shape}"
    rows = [Row(case, "np.copyto", None, copy_ms, x.nbytes, copy_ms)]
    xt = torch.from_numpy(x)
    for n in thread_counts:
        torch.set_num_threads(n)
        qatcore.set_num_threads(n)
        observer = HistogramObserver(bins=2048)
        torch_ms = median_ms(functools.partial(observer, xt), max(3, repeat // 3))
        ms = median_ms(lambda: qatcore.Histogram().observe(x), repeat)
        # observe reads the tensor once for min/max and once to bin it.
        rows.append(Row(case, "torch HistogramObserver(2048)", n, torch_ms, x.nbytes, copy_ms))
        rows.append(Row(case, "qatcore", n, ms, x.nbytes, copy_ms, torch_ms))
    hist = qatcore.Histogram().observe(x)
    search_ms = median_ms(lambda: qatcore.ifmr(hist), repeat)
    rows.append(
        Row(f"ifmr search, {len(hist.counts)} bins x 61", "qatcore", None, search_ms, 0, copy_ms)
    )
    return rows


def rows(a: argparse.Namespace) -> list[Row]:
    return bench_ifmr((64, 256, 56, 56), max(5, a.repeat // 2), a.threads)
