"""The model zoo of the training-step cases: ResNet-20 for 32x32 inputs, and its torch.ao
eager QAT preparation. (The digits CNN is the demo's, qatcore.torch.demo.)"""

from __future__ import annotations

import copy
import warnings

import torch


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
