"""What every bench case shares: the timers, the INT8 grid, a row of the main table and
the table's printing. Imports no framework, so a torch-free child process can use it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from qatcore import qrange

QMIN, QMAX = qrange(8)  # the INT8 grid every case runs on


def median_us(fn: Callable[[], object], repeat: int = 200, warmup: int = 20) -> float:
    """Median of ``repeat`` back-to-back calls after ``warmup`` untimed ones, in
    microseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median of ``repeat`` calls after two untimed ones, in milliseconds."""
    return median_us(fn, repeat, warmup=2) / 1e3


def time_copy(x: np.ndarray, repeat: int) -> float:
    """The single-threaded baseline: np.copyto of x into a preallocated array."""
    dst = np.empty_like(x)
    return median_ms(lambda: np.copyto(dst, x), repeat)


def interleaved_ms(
    steps: Mapping[str, Callable[[], object]], warmup: int, rounds: int
) -> dict[str, float]:
    """Median ms of each callable, timed interleaved: ``warmup`` untimed rounds, then
    ``rounds`` timed rounds that call each once in turn. Each round starts one further
    along the list, so drift, warm-up and what one call leaves behind for the next
    (caches, PyTorch's spinning worker threads) fall on every callable alike."""
    calls = list(steps.items())
    for _ in range(warmup):
        for _, fn in calls:
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        for name, fn in calls[r % len(calls) :] + calls[: r % len(calls)]:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


@dataclass
class Row:
    case: str
    impl: str
    threads: int | None
    ms: float
    nbytes: int
    copy_ms: float
    torch_ms: float | None = None

    def cells(self) -> list[str]:
        gbs = self.nbytes / (self.ms * 1e-3) / 1e9 if self.nbytes else float("nan")
        vs_torch = f"{self.torch_ms / self.ms:.1f}" if self.torch_ms else ""
        return [
            self.case,
            self.impl,
            "1" if self.threads is None else str(self.threads),
            f"{self.ms:.3f}",
            f"{gbs:.1f}",
            f"{self.ms / self.copy_ms:.2f}",
            vs_torch,
        ]


def print_table(rows: list[Row]) -> None:
    head = ["case", "impl", "threads", "ms", "GB/s", "x copy", "x faster than torch"]
    table = [head] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for k, line in enumerate(table):
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
