"""AMCT's graph-mode JSON for a PyTorch model."""

from __future__ import annotations

import json
from typing import Any

from torch import nn

from qatcore.config import RetrainConfig

from ._prepare import quantizable_layers

__all__ = ["to_amct_json"]


def to_amct_json(model: nn.Module, config: Any = None, *, indent: int | None = 4) -> str:
    """The graph-mode JSON that AMCT's ``create_quant_retrain_config`` would write for
    ``model``: every layer qatcore can quantize (Linear, Conv1d/2d/3d, ConvTranspose2d),
    with the settings ``config`` (a ``RetrainConfig``, or what ``RetrainConfig.load``
    reads; None: the defaults) resolves for it, ``retrain_enable`` included. Read back
    with ``RetrainConfig.load``, every layer resolves to the same settings. What AMCT's
    layout cannot hold (one ``batch_num`` per layer, a single clip, per-channel
    ``Linear`` weights) is a ``ConfigError`` naming the layer."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    config = RetrainConfig() if config is None else RetrainConfig.load(config)
    return json.dumps(config.to_amct(quantizable_layers(model)), indent=indent)
