"""The ``threads`` case. Its rows in the main table: the ULQ kernels (qatcore.kernels, on
prepared arrays) on a (32, 32, 32, 32) activation (1M elements, 4 MiB: a training step's
size, in cache) at each thread count, against a copy of the same tensor in cache. Then,
after the main table, three tables of its own:

- ULQ forward, backward and ARQ from 64K to 64M elements at each thread count
  (microseconds, and the speed-up of the last count over the first), with PyTorch's
  copy_ of the same size as the memory's own limit at that moment;
- for each family of operations and each source of threads (PyTorch's OpenMP team, which
  is loaded here, and qatcore's pool) the smallest size from which two threads on two
  chunks beat one thread by 10% at every larger power of two, beside the size below which
  the compiled grains keep a call on one thread. The grains of csrc/ops/layout.h come
  from these rows ("serial below" is twice the grain);
- the public calls of alone.py (Histogram().observe on a (64, 256, 56, 56) tensor,
  ulq_forward and arq on 1M elements) as time / a one-thread copy of the same tensor at
  each thread count, and the speed-up of the last count over the first: once in a child
  process that imports qatcore and no framework (qatcore's own pool), once here, with
  PyTorch loaded (its OpenMP team), one after the other."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import alone
import qatcore
from common import Row, median_us
from qatcore import _core, kernels


def family_calls(n: int) -> dict[str, Callable[[], object]]:
    """One kernel call of about ``n`` work items for each family of csrc/ops/layout.h, on
    prepared arrays (qatcore.kernels), so that the timing is the kernel's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    out = np.empty_like(x)
    lo, hi = np.float32([-2.5]), np.float32([3.0])
    w, w_out = x.reshape(64, -1), out.reshape(64, -1)
    bins = 1024
    edges = np.linspace(-4, 4, bins + 1)
    count = rng.integers(0, 100, bins).astype(np.float64)
    candidates = max(1, n // bins)
    scales = np.linspace(0.01, 0.05, candidates, dtype=np.float32)
    zps = np.zeros(candidates, np.int32)
    return {
        "elementwise": lambda: kernels.ulq_forward(x, out, lo, hi, None, False, 8),
        "ulq_backward": lambda: kernels.ulq_backward(g, x, out, lo, hi, None, False, 8),
        "arq": lambda: kernels.arq(w, w_out, 0, 8),
        "reduce": lambda: _core.minmax(x),
        "ifmr": lambda: _core.hist_sq_errors(edges[:-1], edges[1:], count, scales, zps, 8),
    }


def measure_grains(thread_counts: list[int]) -> list[tuple[str, str, int | None, int]]:
    """For each family and each source of threads: the smallest size from which every
    larger power of two runs at least 10% faster cut in two chunks on two threads than
    whole on one. The compiled grain should be half of it (a call of fewer than two
    grains stays on one thread)."""
    if max(thread_counts) < 2:
        return []
    pools = ["openmp", "qatcore pool"] if _core.openmp_threads() else ["qatcore pool"]
    sizes = [2**e for e in range(8, 21)]
    found = []
    allowed = _core.openmp_allowed()
    for pool in pools:
        _core.set_openmp_allowed(pool == "openmp")
        torch.set_num_threads(2)
        faster: dict[str, list[bool]] = {}
        for n in sizes:
            for family, call in family_calls(n).items():
                qatcore.set_num_threads(1)
                _core.set_grain(0)
                one = median_us(call)
                qatcore.set_num_threads(2)
                _core.set_grain(max(1, n // 2))
                two = median_us(call)
                faster.setdefault(family, []).append(two * 1.1 < one)
        _core.set_grain(0)
        for family, ok in faster.items():
            first = next((i for i in range(len(sizes)) if all(ok[i:])), None)
            found.append(
                (family, pool, None if first is None else sizes[first], 2 * _core.grains()[family])
            )
    _core.set_openmp_allowed(allowed)
    return found


def thread_scaling(thread_counts: list[int]) -> list[tuple[str, int, dict[int, float]]]:
    """ULQ forward and backward (per tensor) and ARQ (per channel, 64 channels) at each
    thread count, on 64K to 64M elements, with the compiled grains: microseconds. Beside
    them PyTorch's copy_ of the same tensor on the same threads: what the memory lets a
    second thread gain at that moment."""
    table = []
    for e in range(16, 27, 2):
        n = 2**e
        calls = family_calls(n)
        src, dst = torch.ones(n), torch.empty(n)
        calls["copy"] = lambda dst=dst, src=src: dst.copy_(src)
        for name, family in [
            ("ulq fwd", "elementwise"),
            ("ulq bwd", "ulq_backward"),
            ("arq", "arq"),
            ("torch copy_", "copy"),
        ]:
            times = {}
            for t in thread_counts:
                torch.set_num_threads(t)
                qatcore.set_num_threads(t)
                times[t] = median_us(calls[family], max(5, min(200, 2**27 // n)))
            table.append((name, n, times))
    return table


def bench_in_cache(repeat: int, thread_counts: list[int]) -> list[Row]:
    """ULQ on a (32, 32, 32, 32) activation (1M elements, 4 MiB: a training step's size,
    in cache), against a copy of the same tensor in cache."""
    shape = (32, 32, 32, 32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    out = np.empty_like(x)
    lo, hi = np.float32([-2.5]), np.float32([3.0])
    scale = np.full(shape[0], 0.02, np.float32)
    copy_ms = median_us(lambda: np.copyto(out, x), 20 * repeat) / 1e3
    case = f"in cache {shape}"
    rows = [Row(case, "np.copyto", None, copy_ms, 2 * x.nbytes, copy_ms)]
    for t in thread_counts:
        torch.set_num_threads(t)
        qatcore.set_num_threads(t)
        for name, call, moved in [
            ("ulq fwd", lambda: kernels.ulq_forward(x, out, lo, hi, None, False, 8), 2),
            ("ulq bwd", lambda: kernels.ulq_backward(g, x, out, lo, hi, None, False, 8), 3),
            ("ulq weight bwd", lambda: kernels.ulq_weight_backward(g, x, g, scale, 0, 8), 2),
        ]:
            ms = median_us(call, 20 * repeat) / 1e3
            rows.append(Row(f"{case} {name}", "qatcore", t, ms, moved * x.nbytes, copy_ms))
    return rows


def print_threads(a: argparse.Namespace) -> None:
    """The thread-scaling table and the measured grains (the threads case)."""
    scaling = thread_scaling(a.threads)
    counts = a.threads
    print()
    head = "kernel       elements " + "".join(f"{t:>9d} thr" for t in counts)
    if len(counts) > 1:
        head += f"  {counts[-1]} vs {counts[0]} thr"
    print(head + "   (us, median)")
    for name, n, times in scaling:
        line = f"{name:12s} {n:>8d} " + "".join(f"{times[t]:13.1f}" for t in counts)
        if len(counts) > 1:
            line += f"  {times[counts[0]] / times[counts[-1]]:11.2f}x"
        print(line)
    grains = measure_grains(a.threads)
    if grains:
        print()
        print("family         threads from  two threads pay from  compiled: serial below")
        for family, pool, size, compiled in grains:
            measured = "never (to 2**20)" if size is None else str(size)
            print(f"{family:14s} {pool:13s} {measured:>20s}  {compiled:>22d}")


def alone_and_beside(a: argparse.Namespace) -> list[dict[str, object]]:
    """alone.py's rows from a child process with no framework, then the same rows here."""
    env = dict(os.environ)
    if a.isa:
        env["QATCORE_ISA"] = a.isa  # a cap: the child then runs at the level asked for
    script = Path(__file__).with_name("alone.py")
    argv = [sys.executable, str(script), "--repeat", str(a.repeat), "--threads"]
    child = subprocess.run(
        argv + [str(t) for t in a.threads], env=env, capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{child.stderr}")
    rows: list[dict[str, object]] = json.loads(child.stdout)
    for row in rows:
        row["us"] = {int(t): us for t, us in row["us"].items()}

    def both(t: int) -> None:
        torch.set_num_threads(t)
        qatcore.set_num_threads(t)

    beside = alone.scaling(a.threads, a.repeat, both)
    for row in rows:
        row["process"] = "import qatcore"
    for row in beside:
        row["process"] = "torch loaded"
    return rows + beside


def print_alone(a: argparse.Namespace) -> None:
    counts = a.threads
    rows = alone_and_beside(a)
    half = len(rows) // 2
    rows = [r for pair in zip(rows[:half], rows[half:]) for r in pair]  # each call's two rows
    width = max(len(str(r["call"])) for r in rows)
    print()
    head = f"{'call':{width}s}  {'process':14s}  {'threads from':12s}"
    head += "".join(f"{t:>7d} thr" for t in counts)
    if len(counts) > 1:
        head += f"  {counts[-1]} vs {counts[0]} thr"
    print(head + "   (time / a one-thread copy of the same tensor)")
    for r in rows:
        us: dict[int, float] = r["us"]
        copy_us = float(r["copy_us"])
        line = f"{r['call']!s:{width}s}  {r['process']!s:14s}  {r['threads_from']!s:12s}"
        line += "".join(f"{us[t] / copy_us:10.2f}x" for t in counts)
        if len(counts) > 1:
            line += f"  {us[counts[0]] / us[counts[-1]]:11.2f}x"
        print(line)


def report(a: argparse.Namespace) -> None:
    print_threads(a)
    print_alone(a)


def rows(a: argparse.Namespace) -> list[Row]:
    return bench_in_cache(a.repeat, a.threads)
