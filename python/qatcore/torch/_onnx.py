"""ONNX export of a QAT model as a QDQ graph (QuantizeLinear/DequantizeLinear pairs).

Each quantized layer becomes an inference twin (:class:`_QdqLayer`) built from its
:class:`Int8Layer` record (:func:`export_int8`): its input passes a
QuantizeLinear/DequantizeLinear pair with the ULQ scale and zero point, its weight is
an int8 initializer feeding a DequantizeLinear, and the float convolution or matrix
product follows. PyTorch's ``torch.export``-based exporter translates the twins
(``quantized_decomposed`` ops) to ONNX; the quantization tensors are then given
stable names.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import qatcore
from qatcore._core import qrange

from ._export import Int8Layer, int8_layers, quantized_layers

# PyTorch's exporter writes opset 18 and converts to other versions; below 18 that
# conversion fails (it keeps 18 or loses the node metadata).
MIN_OPSET = 18
INT8_MIN, INT8_MAX = qrange(8)  # the only width the QDQ graph is written for


@dataclass(frozen=True)
class OnnxQuantizedLayer:
    """Where one quantized layer's tensors are in the exported graph, and their values.

    ``input_quantized`` names the int8 output of the layer's input QuantizeLinear
    (one name per call of the layer: a layer called twice has two);
    ``weight_int8`` names the int8 weight initializer. ``int8`` is the layer's
    :class:`Int8Layer` (what :func:`export_int8` gives), which the graph holds.
    """

    input_quantized: tuple[str, ...]
    weight_int8: str
    int8: Int8Layer

    @property
    def input_params(self) -> qatcore.QuantParams:
        return self.int8.input_params

    @property
    def weight_params(self) -> qatcore.QuantParams:
        return self.int8.weight_params


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the file, its opset, graph inputs and outputs, and
    the quantized layers by module name."""

    path: str
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    layers: dict[str, OnnxQuantizedLayer]


class _QdqLayer(nn.Module):
    """Inference twin of a quantized layer (``LinearQAT``, ``Conv2dQAT``, ...)."""

    weight_int8: torch.Tensor
    weight_scale: torch.Tensor
    weight_zero_point: torch.Tensor

    def __init__(self, layer: nn.Module, record: Int8Layer, name: str, traced: set[str]) -> None:
        super().__init__()
        self.name, self.traced = name, traced
        p, w = record.input_params, record.weight_params
        self.input_scale, self.input_zero_point = float(p.scale), int(p.zero_point)
        self.register_buffer("weight_int8", torch.from_numpy(record.weight_codes.copy()))
        self.weight_axis = w.axis
        if w.axis is None:  # per tensor: constants of the graph
            self.weight_scale_value = float(w.scale)
            self.weight_zero_point_value = int(w.zero_point)
        else:
            self.register_buffer("weight_scale", torch.from_numpy(w.scale.copy()))
            zero_point = w.zero_point.astype(np.int64)
            self.register_buffer("weight_zero_point", torch.from_numpy(zero_point))
        bias = record.bias
        self.bias = None if bias is None else nn.Parameter(torch.from_numpy(bias.copy()), False)
        # The float layer's attributes: its geometry, and for a forward that reads them.
        # The float layer's geometry: its constructor arguments (the QAT layer's
        # _float_args) and the padding its own _conv_forward reads.
        float_args: tuple[str, ...] = layer._float_args  # type: ignore[assignment]
        for attr in (*float_args, "_reversed_padding_repeated_twice"):
            if hasattr(layer, attr):
                setattr(self, attr, getattr(layer, attr))
        # The float layer's own computation with the dequantized weight: F.linear, or
        # the convolution's _conv_forward (which pads first where padding_mode asks).
        if isinstance(layer, nn.Linear):
            self.compute: Any = lambda x, w, b: F.linear(x, w, b)
        elif isinstance(layer, nn.ConvTranspose2d):  # weight axis 1 holds the channels
            g: Any = self  # the geometry attributes copied above
            self.compute = lambda x, w, b: F.conv_transpose2d(
                x, w, b, g.stride, g.padding, g.output_padding, g.groups, g.dilation
            )
        elif isinstance(layer, nn.modules.conv._ConvNd):
            conv_forward: Any = type(layer)._conv_forward  # called on the twin's copy
            self.compute = lambda x, w, b: conv_forward(self, x, w, b)
        else:
            raise TypeError(
                f"model: layer {name!r} is a {type(layer).__name__}, which export_onnx "
                "cannot write (it writes quantized Linear and convolution layers)"
            )

    @property
    def weight(self) -> torch.Tensor:
        raise RuntimeError(
            f"export_onnx: the model's forward reads {self.name}.weight itself; in the "
            f"exported graph a quantized layer's weight exists only as int8 codes "
            f"({self.name}.weight_int8) for the layer's own use"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.traced.add(self.name)  # (torch.export would undo a change to an attribute)
        qd = torch.ops.quantized_decomposed
        s, z = self.input_scale, self.input_zero_point
        xq = qd.quantize_per_tensor(x, s, z, INT8_MIN, INT8_MAX, torch.int8)
        x = qd.dequantize_per_tensor(xq, s, z, INT8_MIN, INT8_MAX, torch.int8)
        if self.weight_axis is None:
            w = qd.dequantize_per_tensor(
                self.weight_int8,
                self.weight_scale_value,
                self.weight_zero_point_value,
                INT8_MIN,
                INT8_MAX,
                torch.int8,
            )
        else:
            w = qd.dequantize_per_channel(
                self.weight_int8,
                self.weight_scale,
                self.weight_zero_point,
                self.weight_axis,
                INT8_MIN,
                INT8_MAX,
                torch.int8,
            )
        return self.compute(x, w, self.bias)


def _require_onnx() -> Any:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ModuleNotFoundError as e:
        if e.name not in ("onnx", "onnxscript"):
            raise
        raise ModuleNotFoundError(
            f"export_onnx needs onnx and onnxscript ({e.name} is not installed); "
            "install them with pip install 'qatcore[onnx]'",
            name=e.name,
        ) from None
    # Registers torch.ops.quantized_decomposed, which the twins call.
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    return onnx


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what PyTorch's exporter says about its own internals (deprecations in
    the libraries it uses, missing torchvision ops), not anything about the model."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
            yield
    finally:
        log.setLevel(level)


def _owner(node: Any) -> str | None:
    """The module name a node was traced in, from the exporter's ``namespace`` metadata
    (``": Root/conv1: pkg.Class/op: target"``)."""
    scopes = node.metadata_props.get("namespace", "").split("/")
    return scopes[-2].partition(": ")[0] if len(scopes) >= 2 else None


def _rename(value: Any, name: str, owners: set[Any]) -> None:
    """Name a node output, or an initializer of the nodes ``owners``. The exporter merges
    equal constants: one shared with other nodes is copied first, and one equal to an
    initializer that already has the name (a layer's further input pairs) uses that."""
    from onnxscript import ir  # the graph library of torch.onnx's exporter

    if not value.is_initializer():
        value.name = name
        return
    graph = value.graph
    existing = graph.initializers.get(name)
    if existing is not None:  # a layer's second input pair: the same scale and zero point
        if existing is not value and np.array_equal(
            existing.const_value.numpy(), value.const_value.numpy()
        ):
            for node, index in list(value.uses()):
                if node in owners:
                    node.replace_input_with(index, existing)
            if not list(value.uses()):
                graph.initializers.pop(value.name)
        return
    if all(node in owners for node, _ in value.uses()):
        value.name = name
        return
    own = ir.Value(
        name=name,
        shape=value.shape,
        type=value.type,
        const_value=ir.tensor(value.const_value.numpy().copy(), name=name),
    )
    graph.register_initializer(own)
    for node, index in list(value.uses()):
        if node in owners:
            node.replace_input_with(index, own)


def _name_quantization_tensors(model: Any, layers: dict[str, Any]) -> dict[str, list[str]]:
    """Give each twin's quantization tensors stable names: ``<layer>.input_quantized``
    (int8) and ``<layer>.input_dequantized`` from the input pair, with its
    ``<layer>.input_scale`` and ``<layer>.input_zero_point``; ``<layer>.weight_int8``
    (the initializer), ``<layer>.weight_scale``, ``<layer>.weight_zero_point`` and
    ``<layer>.weight_dequantized``. A layer called more than once numbers its
    further input pairs (``.1``, ``.2``). Returns the input_quantized names by layer."""
    quantized: dict[str, list[str]] = {name: [] for name in layers}
    for node in list(model.graph):
        owner = _owner(node)
        if owner not in layers:
            continue
        if node.op_type == "QuantizeLinear":
            suffix = f".{len(quantized[owner])}" if quantized[owner] else ""
            pair = {node, *(u for u in node.outputs[0].consumers())}
            node.name = f"{owner}/input_quantize{suffix}"
            _rename(node.outputs[0], f"{owner}.input_quantized{suffix}", pair)
            quantized[owner].append(node.outputs[0].name)
            for user in node.outputs[0].consumers():
                user.name = f"{owner}/input_dequantize{suffix}"
                _rename(user.outputs[0], f"{owner}.input_dequantized{suffix}", pair)
            _rename(node.inputs[1], f"{owner}.input_scale", pair)
            _rename(node.inputs[2], f"{owner}.input_zero_point", pair)
        elif node.op_type == "DequantizeLinear" and node.inputs[0].name == f"{owner}.weight_int8":
            node.name = f"{owner}/weight_dequantize"
            _rename(node.outputs[0], f"{owner}.weight_dequantized", {node})
            _rename(node.inputs[1], f"{owner}.weight_scale", {node})
            _rename(node.inputs[2], f"{owner}.weight_zero_point", {node})
    missing = [n for n, q in quantized.items() if not q]
    if missing:
        raise RuntimeError(
            f"export_onnx: found no input QuantizeLinear for {missing} in the exported graph"
        )
    return quantized


def _names(names: Any, what: str, count: int | None) -> list[str] | None:
    if names is None:
        return None
    if (
        not isinstance(names, Sequence)
        or isinstance(names, str)
        or not all(isinstance(n, str) for n in names)
    ):
        raise TypeError(f"{what}: expected a sequence of str, got {names!r}")
    names = list(names)
    if count is not None and len(names) != count:
        raise ValueError(f"{what}: expected {count} names (one per input), got {len(names)}")
    return names


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    path: str | os.PathLike[str],
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> OnnxExport:
    """Write a calibrated QAT model (from :func:`prepare_qat`) as an ONNX QDQ graph.

    Every quantized layer's weight is stored as int8 (per output channel or per
    tensor, as trained) feeding a DequantizeLinear; its input activation passes a
    QuantizeLinear/DequantizeLinear pair with the ULQ scale and zero point. Layers
    left float by the configuration, and everything else in the model, export as
    PyTorch's exporter writes them, in eval mode; a quantized layer that the eval-mode
    forward does not call (an auxiliary training head) is not in the graph. The graph
    passes ``onnx.checker.check_model(full_check=True)``. The model is not changed.

    ``example_input`` is the model's input (a tensor, or a sequence of tensors for
    several arguments). With ``dynamic_batch`` the first dimension of every input is
    one dynamic ``batch``: the file accepts any batch size, whatever the example's
    (a batch of 1 is traced repeated to 2, since torch.export would fix a dimension
    of size 1; torch.export raises if the model itself fixes the batch). ONNX's
    QuantizeLinear divides by the scale where the SPEC multiplies by its float32
    reciprocal, and has no code for NaN; see the README ("ONNX export") for what that
    changes. Needs ``pip install 'qatcore[onnx]'``.
    """
    onnx = _require_onnx()
    if isinstance(example_input, torch.Tensor):
        args: tuple[Any, ...] = (example_input,)
    else:
        args = tuple(example_input) if isinstance(example_input, Sequence) else ()
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError("example_input: expected a tensor or a non-empty sequence of tensors")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    max_opset = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset: expected an int, got {type(opset).__name__}")
    if not MIN_OPSET <= opset <= max_opset:
        raise ValueError(
            f"opset: expected {MIN_OPSET}..{max_opset} (PyTorch's exporter, onnx "
            f"{onnx.__version__}), got {opset}"
        )
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"dynamic_batch: expected a bool, got {type(dynamic_batch).__name__}")
    if dynamic_batch and (any(a.ndim == 0 for a in args) or len({len(a) for a in args}) != 1):
        raise ValueError(
            "example_input: dynamic_batch=True needs one batch size along the first "
            f"dimension of every input; got shapes {[tuple(a.shape) for a in args]}; pass "
            "dynamic_batch=False to keep them"
        )
    input_names = _names(input_names, "input_names", len(args))
    output_names = _names(output_names, "output_names", None)

    layers = quantized_layers(model)
    for name, m in layers.items():
        if m.weight.dtype != torch.float32:
            raise TypeError(
                f"model: layer {name!r} has {m.weight.dtype} weights; the export writes a "
                "float32 graph (call model.float() first)"
            )
    records = int8_layers(model, "export_onnx")
    for name, record in records.items():
        bits = (record.input_params.num_bits, record.weight_params.num_bits)
        if bits != (8, 8):
            raise ValueError(
                f"model: layer {name!r} is quantized to {bits} bits (activation, weight); "
                "ONNX QDQ export writes int8 only"
            )
    # The copy takes each quantized layer's twin in its place (and leaves the model as
    # is); the export traces on the CPU.
    traced: set[str] = set()  # the layers that the traced forward calls
    memo: dict[int, Any] = {
        id(m): _QdqLayer(m, records[name], name, traced) for name, m in layers.items()
    }
    twin = copy.deepcopy(model, memo).cpu().eval()
    args = tuple(a.detach().cpu() for a in args)
    if dynamic_batch and len(args[0]) == 1:
        # torch.export fixes a dimension of size 1. PyTorch's exporter lifts that for
        # the batch in recent releases, not in all that qatcore[onnx] allows: trace two.
        args = tuple(torch.cat([a, a]) for a in args)

    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} for _ in args)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            twin,
            args,
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            input_names=input_names,
            output_names=output_names,
            verbose=False,
        )
    assert program is not None
    graph = program.model.graph
    if program.model.opset_imports.get("") != opset or (
        not any("namespace" in node.metadata_props for node in graph)
    ):
        raise ValueError(
            f"opset: PyTorch's exporter did not write opset {opset} faithfully (its version "
            "converter changed the opset or dropped the node metadata); it writes opset 18 "
            "natively"
        )
    if output_names is not None and len(output_names) != len(graph.outputs):
        raise ValueError(
            f"output_names: expected {len(graph.outputs)} names (the model's outputs), "
            f"got {len(output_names)}"
        )
    # A layer that the eval-mode forward never calls (an auxiliary training head) is
    # not in the graph.
    names = _name_quantization_tensors(program.model, {n: layers[n] for n in traced})
    program.model.producer_name = "qatcore"
    program.model.producer_version = qatcore.__version__
    path = os.fspath(path)
    program.save(path)
    onnx.checker.check_model(path, full_check=True)

    out_layers = {
        name: OnnxQuantizedLayer(
            input_quantized=tuple(names[name]),
            weight_int8=f"{name}.weight_int8",
            int8=record,
        )
        for name, record in records.items()
        if name in traced
    }
    return OnnxExport(
        path=path,
        opset=opset,
        input_names=tuple(str(v.name) for v in graph.inputs),
        output_names=tuple(str(v.name) for v in graph.outputs),
        layers=out_layers,
    )
