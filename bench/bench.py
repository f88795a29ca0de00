"""qatcore kernels against a plain memory copy and against PyTorch, and a QAT
training step against FP32 and torch.ao, in one run and one table.

    python bench/bench.py [--repeat N] [--rounds R] [--isa LEVEL] [--threads N ...]
                          [--only CASES]

``--only`` takes a comma-separated list of cases, run in the table's order: ``arq``,
``ulq``, ``ulq_weight``, ``ifmr`` (the kernels on large tensors), ``threads`` (see
below; the group ``kernels`` is these five), ``digits``, ``resnet20`` (the training
steps; the group ``train`` is both). The default runs everything, e.g. ``--only train``
or ``--only ulq_weight``.

Every kernel row is the median of --repeat timed runs after two warm-up runs, in this
one process. "GB/s" counts the bytes a kernel must move at the least (read its
inputs, write its outputs: twice the tensor for the copy, ARQ and the ULQ
forwards, three times for the ULQ backward, twice for the weight-ULQ backward, whose
grad_weight is grad_output itself, once for a histogram), so the copy's GB/s is the
machine's practical bandwidth. "x copy" is time / single-threaded copy
time of the same tensor (lower is better, 1.0 is memory speed), or / the FP32 step
for the QAT rows; "x faster than torch" is the PyTorch time (torch.ao QAT for the
QAT rows, the autograd graph of the same formulas for weight ULQ) at the same thread
count / qatcore time.

The ``threads`` case times the ULQ kernels on a (32, 32, 32, 32) activation (4 MiB,
in cache, as in a training step) against a copy of the same tensor in cache, then
prints two more tables: ULQ forward, backward and ARQ from 64K to 64M elements at each
thread count (microseconds, and the speed-up of the last count over the first), with
PyTorch's copy_ of the same size as the memory's own limit at that moment, and
for each family of operations and each source of threads (PyTorch's OpenMP team, which
is loaded here, and qatcore's pool) the smallest size from which two threads on two
chunks beat one thread by 10% at every larger power of two, beside the size below
which the compiled grains keep a call on one thread.

The training-step cases (forward, cross-entropy, backward, optimizer step on one
fixed random batch of 32) build four models from the same float weights: FP32;
"fp32 + copies", FP32 whose quantizable layers take a copy of their input and weight
(the least any fake quantization that writes the tensor the layer reads can cost);
torch.ao eager QAT; qatcore QAT. They time their steps interleaved: after a warm-up
that includes qatcore's calibration batches, R rounds of one step of each in turn, so
drift and warm-up fall on all four alike; each row is the median of its R steps
(5R for the digits CNN, whose step is short). The rows under them are qatcore's
added cost over FP32 as a fraction of torch.ao's, (qatcore - fp32) / (torch.ao -
fp32), and of the copies', with qatcore - fp32 in their ms column.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import qatcore
from qatcore import EPS, _core, kernels, qrange

QMIN, QMAX = qrange(8)  # the INT8 grid every case runs on
ROUNDS = 60  # interleaved rounds of the training-step cases


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


def torch_arq_per_channel(w: torch.Tensor) -> torch.Tensor:
    """PyTorch's equivalent of ARQ per channel: amin/amax per channel, the same
    scale formula, then its per-channel fake quantization."""
    lo, hi = torch.aminmax(w.reshape(w.shape[0], -1), dim=1)
    scale = torch.maximum(hi.clamp_min(0) / QMAX, -lo.clamp_max(0) / -QMIN)
    scale = torch.where(scale >= EPS, scale, torch.ones_like(scale))
    zero_point = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, QMIN, QMAX)


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


class BasicBlock(torch.nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, plus the shortcut (identity, or 1x1 conv-BN where
    the shape changes), then ReLU. The add is a FloatFunctional so that torch.ao's
    eager QAT observes it; in float it is torch.add."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: torch.nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.add_relu = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.add_relu.add_relu(out, shortcut)

    def fuse_groups(self, prefix: str) -> list[list[str]]:
        groups = [[f"{prefix}conv1", f"{prefix}bn1", f"{prefix}relu1"]]
        groups.append([f"{prefix}conv2", f"{prefix}bn2"])
        if self.downsample is not None:
            groups.append([f"{prefix}downsample.0", f"{prefix}downsample.1"])
        return groups


class ResNet20(torch.nn.Module):
    """ResNet-20 for 32x32 inputs (He et al. 2016, CIFAR-10): conv3x3(16)-BN-ReLU,
    three stages of three basic blocks at 16, 32 and 64 channels (stride 2 into the
    second and third, with 1x1 conv shortcuts there), global average pool, Linear(64->10).
    The stubs are identities in float and for qatcore."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.quant = torch.ao.quantization.QuantStub()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        blocks: list[torch.nn.Module] = []
        cin = 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu1(self.bn1(self.conv1(self.quant(x)))))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))

    def fuse_groups(self) -> list[list[str]]:
        groups = [["conv1", "bn1", "relu1"]]
        for i, block in enumerate(self.blocks):
            assert isinstance(block, BasicBlock)
            groups += block.fuse_groups(f"blocks.{i}.")
        return groups


def torch_ao_qat_resnet(fp32: torch.nn.Module) -> torch.nn.Module:
    """torch.ao eager QAT: conv+BN(+ReLU) fused for training, default x86 QAT qconfig
    (per-channel weights, moving-average min/max activation observers)."""
    assert isinstance(fp32, ResNet20)
    model = copy.deepcopy(fp32).train()
    with warnings.catch_warnings():  # torch.ao announces its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated")
        model.qconfig = torch.ao.quantization.get_default_qat_qconfig("x86")
        torch.ao.quantization.fuse_modules_qat(model, fp32.fuse_groups(), inplace=True)
        return torch.ao.quantization.prepare_qat(model, inplace=True)


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


# ---- threads: in-cache sizes, thread scaling, the grains -------------------------------


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


CASES: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "arq": lambda a: [
        r for s in [(256, 256, 3, 3), (4096, 4096)] for r in bench_arq(s, a.repeat, a.threads)
    ],
    "ulq": lambda a: bench_ulq((64, 256, 56, 56), max(5, a.repeat // 2), a.threads),
    "ulq_weight": lambda a: bench_ulq_weight((4096, 4096), a.repeat, a.threads),
    "ifmr": lambda a: bench_ifmr((64, 256, 56, 56), max(5, a.repeat // 2), a.threads),
    "threads": lambda a: bench_in_cache(a.repeat, a.threads),
    "digits": lambda a: bench_digits_step(5 * a.rounds, a.threads),
    "resnet20": lambda a: bench_resnet20_step(a.rounds, a.threads),
}
GROUPS = {
    "kernels": ["arq", "ulq", "ulq_weight", "ifmr", "threads"],
    "train": ["digits", "resnet20"],
}


def parse_cases(text: str) -> list[str]:
    """A comma-separated list of case and group names, in the table's order."""
    chosen = set()
    for word in text.split(","):
        names = GROUPS.get(word.strip(), [word.strip()])
        for name in names:
            if name not in CASES:
                raise argparse.ArgumentTypeError(
                    f"unknown case {word.strip()!r}; expected a comma-separated list of "
                    f"{', '.join([*CASES, *GROUPS])}"
                )
        chosen.update(names)
    return [name for name in CASES if name in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per kernel row (median)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="interleaved rounds per training-step row (median; the digits case runs 5x as many)",
    )
    parser.add_argument("--isa", choices=qatcore.available_isas(), help="instruction-set level")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--only",
        type=parse_cases,
        default=list(CASES),
        metavar="CASES",
        help=f"comma-separated cases or groups to run (default: all): {', '.join(CASES)}; "
        + "; ".join(f"{g} = {','.join(names)}" for g, names in GROUPS.items()),
    )
    args = parser.parse_args()
    if args.isa:
        qatcore.set_isa(args.isa)
    info = qatcore.backend_info()
    print(
        f"qatcore {info['version']}  isa={info['isa']} (available {info['available_isas']})  "
        f"torch {torch.__version__}  numpy {np.__version__}  {platform.machine()}"
    )
    rows: list[Row] = []
    for name in args.only:
        rows += CASES[name](args)
    print_table(rows)
    if "threads" in args.only:
        print_threads(args)


if __name__ == "__main__":
    main()
