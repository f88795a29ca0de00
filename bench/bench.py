"""qatcore kernels against a plain memory copy and against PyTorch, in one run.

    python bench/bench.py [--repeat N] [--isa LEVEL]

Every row is the median of --repeat timed runs after two warm-up runs, in this
one process. "GB/s" counts the bytes a kernel must move at the least (read its
inputs, write its outputs: twice the tensor for the copy, ARQ and the ULQ
forward, three times for the ULQ backward, once for a histogram), so the copy's
GB/s is the machine's practical bandwidth. "x copy" is time / single-threaded copy time of the same
tensor (lower is better, 1.0 is memory speed), or / the FP32 step for the QAT
rows; "x faster than torch" is the PyTorch time at the same thread count /
qatcore time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import qatcore

EPS = 2.0**-23


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_copy(x: np.ndarray, repeat: int) -> float:
    """The single-threaded baseline: np.copyto of x into a preallocated array."""
    dst = np.empty_like(x)
    return median_ms(lambda: np.copyto(dst, x), repeat)


def torch_arq_per_channel(w: torch.Tensor) -> torch.Tensor:
    """PyTorch's equivalent of ARQ per channel: amin/amax per channel, the same
    scale formula, then its per-channel fake quantization."""
    lo, hi = torch.aminmax(w.reshape(w.shape[0], -1), dim=1)
    scale = torch.maximum(hi.clamp_min(0) / 127, -lo.clamp_max(0) / 128)
    scale = torch.where(scale >= EPS, scale, torch.ones_like(scale))
    zero_point = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, -128, 127)


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


def torch_ulq_learnable(
    x: torch.Tensor, g: torch.Tensor, scale: float, zero_point: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PyTorch's learnable-scale fake quantization (LSQ), forward and backward."""
    x.grad = None
    s = torch.tensor([scale], requires_grad=True)
    z = torch.tensor([float(zero_point)], requires_grad=True)
    y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, -128, 127, 1.0)
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

    def both() -> None:
        fwd()
        bwd()

    for n in thread_counts:
        torch.set_num_threads(n)
        qatcore.set_num_threads(n)
        torch_ms = median_ms(
            lambda: torch_ulq_learnable(xt, gt, float(params.scale), int(params.zero_point)),
            max(3, repeat // 3),
        )
        rows.append(Row(f"{case} fwd", "qatcore", n, median_ms(fwd, repeat), 2 * x.nbytes, copy_ms))
        # backward moves x and grad_output in, grad_input out: three tensors.
        rows.append(Row(f"{case} bwd", "qatcore", n, median_ms(bwd, repeat), 3 * x.nbytes, copy_ms))
        rows.append(Row(f"{case} fwd+bwd", "torch LSQ", n, torch_ms, 5 * x.nbytes, copy_ms))
        rows.append(
            Row(
                f"{case} fwd+bwd",
                "qatcore",
                n,
                median_ms(both, repeat),
                5 * x.nbytes,
                copy_ms,
                torch_ms,
            )
        )
    return rows


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
        torch_ms = median_ms(lambda o=observer: o(xt), max(3, repeat // 3))
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


def bench_qat_step(repeat: int, thread_counts: list[int]) -> list[Row]:
    """One training step (forward, backward, Adam) of the demo's digits CNN, batch 32:
    FP32, qatcore INT8 QAT and torch.ao eager QAT. "x copy" here is time / FP32 time."""
    import copy as _copy

    from qatcore.demo import DigitsNet, torch_ao_qat
    from qatcore.torch import prepare_qat

    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1))

    def step_ms(model: torch.nn.Module) -> float:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        for _ in range(20):  # calibration and warm-up
            step()
        return median_ms(step, repeat * 20)

    rows = []
    for n in thread_counts:
        torch.set_num_threads(n)
        qatcore.set_num_threads(n)
        torch.manual_seed(0)
        fp32 = DigitsNet()
        base = step_ms(_copy.deepcopy(fp32))
        ours = step_ms(prepare_qat(fp32))
        theirs = step_ms(torch_ao_qat(fp32))
        case = "qat step, digits CNN, batch 32"
        rows.append(Row(case, "fp32", n, base, 0, base))
        rows.append(Row(case, "torch.ao QAT", n, theirs, 0, base))
        rows.append(Row(case, "qatcore QAT", n, ours, 0, base, theirs))
        added = (ours - base) / (theirs - base)
        rows.append(
            Row(
                f"  added cost over fp32: qatcore / torch.ao = {added:.2f}",
                "",
                n,
                ours - base,
                0,
                base,
            )
        )
    return rows


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per row (median)")
    parser.add_argument("--isa", choices=qatcore.available_isas(), help="instruction-set level")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if args.isa:
        qatcore.set_isa(args.isa)
    info = qatcore.backend_info()
    print(
        f"qatcore {info['version']}  isa={info['isa']} (available {info['available_isas']})  "
        f"torch {torch.__version__}  numpy {np.__version__}  {platform.machine()}"
    )
    rows: list[Row] = []
    for shape in [(256, 256, 3, 3), (4096, 4096)]:
        rows += bench_arq(shape, args.repeat, args.threads)
    rows += bench_ulq((64, 256, 56, 56), max(5, args.repeat // 2), args.threads)
    rows += bench_ifmr((64, 256, 56, 56), max(5, args.repeat // 2), args.threads)
    rows += bench_qat_step(args.repeat, args.threads)
    print_table(rows)


if __name__ == "__main__":
    main()
