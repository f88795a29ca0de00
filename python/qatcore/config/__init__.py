"""The retrain configuration of the seed, validated, resolved per layer, read and written.

Every parameter of ``quantization-config-parameters.txt`` is a field here, with the
seed's types, ranges, defaults and recommended values (see the README's
"Configuration" section). Errors are ``ConfigError`` (a ``ValueError``) whose
message gives the path of the offending value, the value and what is allowed.

The canonical JSON layout uses the seed's names: global defaults at the top level,
partial overrides by layer type under ``"layer_types"`` and by layer name under
``"layers"``, and skip lists::

    {"retrain_enable": true,
     "retrain_data_config": {"batch_num": 1, "clip_max": null, "clip_min": null,
                             "fixed_min": null, "dst_type": "INT8"},
     "retrain_weight_config": {"weights_retrain_algo": "arq_retrain",
                               "channel_wise": true, "dst_type": "INT8"},
     "layer_types": {"Linear": {"retrain_weight_config": {"channel_wise": false}}},
     "layers": {"conv1": {"retrain_data_config": {"fixed_min": true}},
                "fc": {"retrain_enable": false}},
     "skip_layers": [], "skip_layer_types": [], "fakequant_precision_mode": "DEFAULT"}

A layer's settings are, field by field: its ``layers`` override, else its type's
``layer_types`` override, else the global defaults. ``skip_layers`` and
``skip_layer_types`` leave a layer float unless one of its overrides sets
``retrain_enable`` itself (as in AMCT, where an override re-enables a skipped layer).

``RetrainConfig.load`` also reads AMCT's two other forms: the graph-mode JSON that
``create_quant_retrain_config`` writes (``version``, ``batch_num``, one section per
layer; a layer it does not list stays float) and the ``.cfg`` "simple config" in
protobuf text format. The single-op ``config=`` dict of AMCT's ``Conv2dQAT`` and
friends is the canonical layout's top level.

The modules: ``model`` (the data model, no file format), ``canonical``,
``amct_graph`` and ``amct_cfg`` (one reader and writer per form), ``retrain``
(``RetrainConfig``: the model with its forms), ``amct_types`` (AMCT's facts about
layer types) and ``errors``.
"""

from __future__ import annotations

from .amct_types import AMCT_RETRAIN_TYPES, type_channel_wise
from .canonical import parse_json
from .errors import ConfigError, QuantizationWarning
from .model import (
    DST_TYPES,
    FAKEQUANT_PRECISION_MODES,
    UNSET,
    WEIGHT_ALGORITHM_ALIASES,
    WEIGHT_ALGORITHMS,
    DataOverride,
    LayerConfig,
    LayerOverride,
    RetrainDataConfig,
    RetrainSettings,
    RetrainWeightConfig,
    WeightOverride,
)
from .retrain import RetrainConfig

__all__ = [
    "AMCT_RETRAIN_TYPES",
    "DST_TYPES",
    "FAKEQUANT_PRECISION_MODES",
    "UNSET",
    "WEIGHT_ALGORITHMS",
    "WEIGHT_ALGORITHM_ALIASES",
    "ConfigError",
    "DataOverride",
    "LayerConfig",
    "LayerOverride",
    "QuantizationWarning",
    "RetrainConfig",
    "RetrainDataConfig",
    "RetrainSettings",
    "RetrainWeightConfig",
    "WeightOverride",
    "parse_json",
    "type_channel_wise",
]
