"""INT8 export: what an integer engine needs from each quantized layer, as typed records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from torch import nn

import qatcore

from ._layers import QUANTIZED

__all__ = ["Int8Layer", "export_int8", "quantized_layers"]

#: The quantized layer types, from the one registry (float type -> quantized type).
_QUANTIZED_TYPES = tuple(QUANTIZED.values())


@dataclass(frozen=True, eq=False)
class Int8Layer:
    """One quantized layer as an integer engine runs it: ``y = W x + b`` with the int8
    input ``quantize(x, input_params)`` and the int8 weights ``weight_codes``.

    ``layer_type`` is the float layer it replaced (``nn.Linear``, ``nn.Conv1d``,
    ``nn.Conv2d``, ``nn.Conv3d``, ``nn.ConvTranspose2d``); the geometry (stride,
    padding, ...) is that layer's. ``weight_codes`` are ``qatcore.quantize(weight,
    weight_params)`` in the weight's shape (per output channel along axis 0, axis 1 for
    ``ConvTranspose2d``, or per tensor, as trained), int8 also for INT4 weights (codes in
    the 4-bit range, ``weight_params.num_bits`` says so); ``weight_params`` are
    symmetric, zero point 0, under every weight algorithm (ARQ's scales, or ULQ's
    learned ones);
    ``input_params`` are the ULQ scale and zero point of the learned input clips
    ``input_clip_min``/``input_clip_max``. ``bias`` stays float32 (``None`` without
    one). The arrays are read-only copies.
    """

    layer_type: type[nn.Module]
    weight_codes: NDArray[np.int8]
    weight_params: qatcore.QuantParams
    input_params: qatcore.QuantParams
    input_clip_min: float
    input_clip_max: float
    bias: NDArray[np.float32] | None

    def __repr__(self) -> str:
        w, p = self.weight_params, self.input_params
        per = "per tensor" if w.axis is None else f"per channel (axis={w.axis})"
        bias = "None" if self.bias is None else f"float32{list(self.bias.shape)}"
        return (
            f"Int8Layer({self.layer_type.__name__}, weight_codes=int8"
            f"{list(self.weight_codes.shape)} {per}, input scale={float(p.scale):.6g} "
            f"zero_point={int(p.zero_point)} (clips {self.input_clip_min:.6g}.."
            f"{self.input_clip_max:.6g}), bias={bias})"
        )


def quantized_layers(model: nn.Module) -> dict[str, Any]:
    """The model's quantized layers (from :func:`prepare_qat`, or built with
    ``retrain_enable`` true) by module name."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, _QUANTIZED_TYPES) and m.layer_config.retrain_enable
    }


def _read_only(a: np.ndarray[Any, Any]) -> Any:
    a = np.array(a)  # a copy the record owns
    a.setflags(write=False)
    return a


def _float_type(layer: nn.Module) -> type[nn.Module]:
    return next(f for f, q in QUANTIZED.items() if isinstance(layer, q))


def int8_layers(model: nn.Module, call: str) -> dict[str, Int8Layer]:
    """:func:`export_int8` for ``call`` (the public function the user called, which the
    errors name)."""
    out: dict[str, Int8Layer] = {}
    for name, m in quantized_layers(model).items():
        act = m.act_quant
        if not act.calibrated:
            raise act.not_calibrated(call)
        for what, bits in (("activation", act.num_bits), ("weight", m.weight_quant.num_bits)):
            if bits > 8:  # int8 codes cannot hold them: refuse rather than write wrong ones
                raise ValueError(
                    f"{call}: layer {name!r} quantizes its {what} to {bits} bits "
                    f"(dst_type INT{bits}), which int8 codes cannot hold"
                )
        w = m.weight.detach().cpu().float().numpy()
        weight_params = m.weight_quant.params(m.weight)
        out[name] = Int8Layer(
            layer_type=_float_type(m),
            weight_codes=_read_only(qatcore.quantize(w, weight_params)),
            weight_params=weight_params,
            input_params=act.params(),
            input_clip_min=act.clip_min.item(),
            input_clip_max=act.clip_max.item(),
            bias=None if m.bias is None else _read_only(m.bias.detach().cpu().float().numpy()),
        )
    return out


def export_int8(model: nn.Module) -> dict[str, Int8Layer]:
    """Each quantized layer of a calibrated QAT model (from :func:`prepare_qat`) as an
    :class:`Int8Layer`, by module name in ``model.named_modules()`` order: int8 weight
    codes with their scales and zero points, the input activation's scale and zero
    point (and the clips they come from) and the float bias. The model is not changed.
    """
    return int8_layers(model, "export_int8")
