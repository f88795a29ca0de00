"""qatcore for PyTorch: quantization-aware training with the qatcore kernels.

``prepare_qat(model, config)`` swaps the layers a ``RetrainConfig`` enables for
quantized twins (``LinearQAT``, ``Conv2dQAT``, ... which AMCT users can also build
directly, with the float layer's arguments plus ``config=``); train as usual (the
first ``batch_num`` batches calibrate the activation clips with IFMR);
``export_int8(model)`` gives what an integer engine needs (an :class:`Int8Layer` per
layer), and ``export_onnx(model, example_input, path)`` writes an ONNX QDQ graph.
``python -m qatcore.torch.demo`` runs the demo.
Install with ``pip install 'qatcore[torch]'`` (``qatcore[onnx]`` for the ONNX export).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ModuleNotFoundError as e:  # only torch itself missing: a broken install still says why
    if e.name != "torch":
        raise
    raise ModuleNotFoundError(
        "qatcore.torch needs PyTorch, which is not installed; install it with "
        "pip install 'qatcore[torch]'",
        name="torch",
    ) from None

from ._amct import to_amct_json
from ._dispatch import force_portable
from ._export import Int8Layer, export_int8, quantized_layers
from ._fake_quant import ActivationFakeQuant, WeightFakeQuant
from ._functions import (
    ArqFunction,
    UlqFunction,
    UlqWeightFunction,
    arq_fake_quant,
    ulq_fake_quant,
    ulq_weight_fake_quant,
)
from ._layers import QUANTIZED, Conv1dQAT, Conv2dQAT, Conv3dQAT, ConvTranspose2dQAT, LinearQAT
from ._onnx import OnnxExport, OnnxQuantizedLayer, export_onnx
from ._prepare import prepare_qat, quantizable_layers

__all__ = [
    "QUANTIZED",
    "ActivationFakeQuant",
    "ArqFunction",
    "Conv1dQAT",
    "Conv2dQAT",
    "Conv3dQAT",
    "ConvTranspose2dQAT",
    "Int8Layer",
    "LinearQAT",
    "OnnxExport",
    "OnnxQuantizedLayer",
    "UlqFunction",
    "UlqWeightFunction",
    "WeightFakeQuant",
    "arq_fake_quant",
    "export_int8",
    "export_onnx",
    "force_portable",
    "prepare_qat",
    "quantizable_layers",
    "quantized_layers",
    "to_amct_json",
    "ulq_fake_quant",
    "ulq_weight_fake_quant",
]
