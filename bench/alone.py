"""Thread scaling of the public calls "with only ``import qatcore``": imports no framework,
so run as a script it shows qatcore's own pool (no OpenMP team to borrow); the threads
case runs it so, in a child process, and calls ``scaling`` again in its own process,
where PyTorch is loaded, for the same rows on PyTorch's OpenMP team.

    python bench/alone.py --threads 1 2 [--repeat N]

prints, as JSON, ``scaling``'s rows: for ``Histogram().observe`` on a (64, 256, 56, 56)
float32 tensor and ``ulq_forward`` and ``arq`` (per channel) on 1M float32 elements, the
median time at each thread count and the median time of a one-thread np.copyto of the
same tensor, and where the threads came from."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np

import qatcore
from common import median_us

BIG = (64, 256, 56, 56)  # a ResNet-50 activation: 205 MB, out of cache
SMALL = 1 << 20  # 1M elements: 4 MiB, a training step's size


def calls(repeat: int) -> list[tuple[str, np.ndarray, Callable[[], object], int]]:
    """(name, input, the public call, timed runs) for each row: the runs of the ifmr case
    for the large tensor, of the in-cache rows of the threads case for the small ones."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal(BIG, dtype=np.float32)
    x = rng.standard_normal(SMALL, dtype=np.float32)
    y = np.empty_like(x)
    w = x.reshape(64, -1)
    w_out = np.empty_like(w)
    big_runs = max(5, repeat // 2)
    return [
        (f"Histogram().observe {BIG}", big, lambda: qatcore.Histogram().observe(big), big_runs),
        ("ulq_forward 1M", x, lambda: qatcore.ulq_forward(x, -2.5, 3.0, out=y), 20 * repeat),
        ("arq (64, 16384)", w, lambda: qatcore.arq(w, out=w_out), 20 * repeat),
    ]


def scaling(
    thread_counts: list[int],
    repeat: int,
    set_threads: Callable[[int], object] = qatcore.set_num_threads,
) -> list[dict[str, object]]:
    """For each call: {"call", "threads_from", "copy_us", "us": {threads: median us}}.
    ``set_threads`` sets the thread count (with PyTorch loaded, torch's too: it caps
    qatcore's). The copy and each call are timed with the same number of runs."""
    rows = []
    for name, x, call, runs in calls(repeat):
        dst = np.empty_like(x)
        copy_us = median_us(lambda x=x, dst=dst: np.copyto(dst, x), runs, warmup=2)
        us = {}
        for t in thread_counts:
            set_threads(t)
            us[t] = median_us(call, runs, warmup=2)
        rows.append(
            {
                "call": name,
                "threads_from": qatcore.backend_info()["threads_from"],
                "copy_us": copy_us,
                "us": us,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=15, help="as bench.py's --repeat")
    args = parser.parse_args(argv)
    rows = scaling(args.threads, args.repeat)
    if "torch" in sys.modules:
        raise RuntimeError("alone.py: something imported torch; the rows would not be alone")
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
