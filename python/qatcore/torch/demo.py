"""Quantization-aware training of a small CNN on scikit-learn's 8x8 digits.

Trains the FP32 model, then fine-tunes it with qatcore's INT8 QAT (default
``RetrainConfig``: ARQ per-channel weights, or with ``--weights ulq_quantize`` a
learned symmetric scale per channel; ULQ activations calibrated by IFMR on the first
batch) and, for comparison, with PyTorch's eager-mode QAT
(``torch.ao.quantization``, default per-channel qconfig) on the same schedule.
Prints the three test accuracies, each layer's learned clips and the time per
training step. With ``--onnx FILE`` it exports the QAT model as an ONNX QDQ graph
and prints its ONNX Runtime accuracy beside the PyTorch fake-quant accuracy, both
with every node computed as ONNX defines it and with ONNX Runtime's own integer
kernels. The digits ship with scikit-learn: no download. Needs
``pip install 'qatcore[demo]'`` (PyTorch, scikit-learn, matplotlib, ONNX Runtime).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.ao.quantization as tq
import torch.nn.functional as F
from torch import nn

import qatcore
from qatcore.config import WEIGHT_ALGORITHMS
from qatcore.torch import export_int8, prepare_qat, quantized_layers

PROG = "python -m qatcore.torch.demo"
EPOCHS, QAT_EPOCHS, SEED = 15, 4, 0  # the demo's schedule, as the README reports it


def _missing(e: ModuleNotFoundError, what: str) -> ModuleNotFoundError:
    """The error for a module that the demo extra installs."""
    return ModuleNotFoundError(
        f"{what} needs {e.name}, which is not installed; install it with "
        "pip install 'qatcore[demo]'",
        name=e.name,
    )


class DigitsNet(nn.Module):
    """Conv(1->16) ReLU Conv(16->32) ReLU MaxPool Linear(512->64) ReLU Linear(64->10).

    The stubs and ReLU modules are identities for qatcore and let PyTorch's
    eager-mode QAT quantize the same network.
    """

    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        return self.dequant(self.fc2(x))


@dataclass
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(seed: int = 0) -> Digits:
    """The 1797 digits, scaled to [0, 1], split 75/25 with a fixed seed."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ModuleNotFoundError as e:
        raise _missing(e, "the digits demo") from None

    data = sk_load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.75 * len(y))
    train, test = order[:cut], order[cut:]
    return Digits(x[train], y[train], x[test], y[test])


def train(
    model: nn.Module,
    data: Digits,
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    batch_size: int = 32,
    on_step: Callable[[], None] | None = None,
) -> list[float]:
    """Adam on cross-entropy, shuffled batches from a seeded generator; step times in s."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            t0 = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - t0)
            if on_step is not None:
                on_step()
    return times


def percent_correct(logits: np.ndarray, y: np.ndarray) -> float:
    return int((logits.argmax(axis=1) == y).sum()) * 100.0 / len(y)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return percent_correct(model(x).numpy(), y.numpy())


def onnx_accuracy(path: str, x: torch.Tensor, y: torch.Tensor, *, integer_kernels: bool) -> float:
    """Accuracy of an exported model in ONNX Runtime (CPU execution provider). With
    ``integer_kernels`` the session runs with ONNX Runtime's default optimizations,
    which fuse QDQ pairs into integer kernels (QLinearConv, QGemm); without, every
    node computes what the ONNX operator defines."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        raise _missing(e, "running the exported model") from None
    options = ort.SessionOptions()
    if not integer_kernels:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return percent_correct(logits, y.numpy())


def torch_ao_qat(fp32: nn.Module) -> nn.Module:
    """PyTorch's eager-mode QAT of the same network: fused conv/linear + ReLU, default
    per-channel QAT qconfig of the x86 backend."""
    model = copy.deepcopy(fp32).train()
    with warnings.catch_warnings():  # torch.ao announces its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated")
        model.qconfig = tq.get_default_qat_qconfig("x86")
        tq.fuse_modules_qat(
            model, [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]], inplace=True
        )
        return tq.prepare_qat(model, inplace=True)


@dataclass
class DemoResult:
    fp32_accuracy: float
    qat_accuracy: float
    torch_qat_accuracy: float
    fp32_step_ms: float
    qat_step_ms: float
    torch_qat_step_ms: float
    model: nn.Module
    data: Digits
    fp32_model: nn.Module


def run(
    epochs: int = EPOCHS,
    qat_epochs: int = QAT_EPOCHS,
    seed: int = SEED,
    config: qatcore.RetrainConfig | None = None,
    reuse: DemoResult | None = None,
) -> DemoResult:
    """FP32 training, then qatcore's QAT with ``config`` and torch.ao's QAT from it.

    ``reuse``: the result of an earlier run with the same ``epochs``, ``qat_epochs`` and
    ``seed``, whose FP32 model and torch.ao QAT (which ``config`` does not change) are
    taken as they are; only qatcore's QAT runs again.
    """

    def ms(times: list[float]) -> float:
        return float(np.median(times)) * 1e3

    fp32: nn.Module
    if reuse is None:
        torch.manual_seed(seed)
        data = load_digits(seed)
        fp32 = DigitsNet()
        fp32_ms = ms(train(fp32, data, epochs=epochs, lr=3e-3, seed=seed))
        fp32_acc = accuracy(fp32, data.x_test, data.y_test)
    else:
        data, fp32 = reuse.data, reuse.fp32_model
        fp32_ms, fp32_acc = reuse.fp32_step_ms, reuse.fp32_accuracy

    qat = prepare_qat(fp32, config or qatcore.RetrainConfig())
    qat_ms = ms(train(qat, data, epochs=qat_epochs, lr=3e-4, seed=seed + 1))
    qat_acc = accuracy(qat, data.x_test, data.y_test)

    if reuse is None:
        ref = torch_ao_qat(fp32)
        ref_ms = ms(train(ref, data, epochs=qat_epochs, lr=3e-4, seed=seed + 1))
        ref_acc = accuracy(ref, data.x_test, data.y_test)
    else:
        ref_ms, ref_acc = reuse.torch_qat_step_ms, reuse.torch_qat_accuracy

    return DemoResult(fp32_acc, qat_acc, ref_acc, fp32_ms, qat_ms, ref_ms, qat, data, fp32)


def plot_calibration(model: nn.Module, path: str) -> None:
    try:
        import matplotlib
    except ModuleNotFoundError as e:
        raise _missing(e, "--plot") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = {
        n: m
        for n, m in quantized_layers(model).items()
        if m.act_quant.calibrator.last_ifmr is not None
    }
    fig, axes = plt.subplots(len(layers), 1, figsize=(8, 3.6 * len(layers)), squeeze=False)
    for ax, (name, m) in zip(axes[:, 0], layers.items()):
        m.act_quant.calibrator.last_ifmr.plot(ax=ax)
        ax.set_title(f"{name}: " + ax.get_title())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    number: dict[str, Any] = {"type": int, "metavar": "N"}
    parser.add_argument(
        "--epochs", default=EPOCHS, help="FP32 training epochs (default: %(default)s)", **number
    )
    parser.add_argument(
        "--qat-epochs",
        default=QAT_EPOCHS,
        help="QAT fine-tuning epochs (default: %(default)s)",
        **number,
    )
    parser.add_argument(
        "--threads", help="torch and qatcore threads (default: each library's own)", **number
    )
    parser.add_argument(
        "--seed", default=SEED, help="data split and training seed (default: %(default)s)", **number
    )
    parser.add_argument(
        "--weights",
        default="arq_retrain",
        choices=WEIGHT_ALGORITHMS,
        metavar="ALGO",
        help="weights_retrain_algo of every layer: "
        + " or ".join(WEIGHT_ALGORITHMS)
        + " (default: %(default)s)",
    )
    parser.add_argument(
        "--plot", metavar="FILE", help="save each layer's IFMR calibration (default: no plot)"
    )
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="export the QAT model to ONNX and run it in ONNX Runtime (default: no export)",
    )
    args = parser.parse_args(argv)
    if args.onnx:  # before a minute of training, not after
        for module in ("onnx", "onnxscript", "onnxruntime"):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                parser.error(str(_missing(e, "--onnx")))
    if args.threads:
        torch.set_num_threads(args.threads)
        qatcore.set_num_threads(args.threads)
    config = qatcore.RetrainConfig.from_dict(
        {"retrain_weight_config": {"weights_retrain_algo": args.weights}}
    )
    r = run(args.epochs, args.qat_epochs, args.seed, config)
    info = qatcore.backend_info()
    print(
        f"qatcore {info['version']} ({info['isa']}, {info['num_threads']} threads), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(
        f"digits test accuracy   FP32 {r.fp32_accuracy:6.2f}%   qatcore INT8 QAT "
        f"{r.qat_accuracy:6.2f}%   torch.ao INT8 QAT {r.torch_qat_accuracy:6.2f}%"
    )
    print(
        f"median ms per training step   FP32 {r.fp32_step_ms:.3f}   qatcore QAT "
        f"{r.qat_step_ms:.3f}   torch.ao QAT {r.torch_qat_step_ms:.3f}"
    )
    print("learned clips (input activation of each quantized layer) and int8 weights:")
    modules = quantized_layers(r.model)
    for name, layer in export_int8(r.model).items():
        p = layer.input_params
        algo = modules[name].layer_config.retrain_weight_config.weights_retrain_algo
        print(
            f"  {name:6s} clip_min {layer.input_clip_min:9.4f}  clip_max "
            f"{layer.input_clip_max:9.4f}  scale {float(p.scale):.4g}  zero_point "
            f"{int(p.zero_point):4d}  weights {algo}"
        )
    if args.plot:
        plot_calibration(r.model, args.plot)
        print(f"calibration plots written to {args.plot}")
    if args.onnx:
        from qatcore.torch import export_onnx

        data = r.data
        exported = export_onnx(r.model.eval(), data.x_test[:2], args.onnx)
        print(
            f"ONNX QDQ model written to {exported.path} (opset {exported.opset}, "
            f"{len(exported.layers)} quantized layers)"
        )
        as_defined, integer = (
            onnx_accuracy(exported.path, data.x_test, data.y_test, integer_kernels=k)
            for k in (False, True)
        )
        print(
            f"digits test accuracy   PyTorch fake-quant {r.qat_accuracy:6.2f}%   "
            f"ONNX Runtime {as_defined:6.2f}% (QDQ nodes as defined), "
            f"{integer:6.2f}% (its integer kernels)"
        )


if __name__ == "__main__":
    main()
