"""``python -m qatcore check-config FILE``: validate a retrain configuration file (any of
the three forms: canonical or AMCT graph-mode JSON, AMCT ``.cfg``)."""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, LayerConfig, RetrainConfig
from .config.amct_types import PER_TENSOR_TYPES


def describe(layer: LayerConfig) -> str:
    """One line of resolved settings, in the seed's terms."""
    if not layer.retrain_enable:
        return "retrain_enable=false (stays float)"
    d, w = layer.retrain_data_config, layer.retrain_weight_config

    def clip(value: float | None) -> str:
        return "IFMR" if value is None else repr(value)

    fixed = "from data" if d.fixed_min is None else str(d.fixed_min).lower()
    return (
        f"retrain_enable=true | data: batch_num={d.batch_num} clip_max={clip(d.clip_max)} "
        f"clip_min={clip(d.clip_min)} fixed_min={fixed} dst_type={d.dst_type} | "
        f"weights: weights_retrain_algo={w.weights_retrain_algo} "
        f"channel_wise={str(w.channel_wise).lower()} dst_type={w.dst_type}"
    )


def check_config(path: str) -> int:
    try:
        config = RetrainConfig.load(path)
    except (ConfigError, OSError, UnicodeDecodeError, ImportError) as e:
        print(f"{path}: invalid: {e}", file=sys.stderr)
        return 1
    print(f"{path}: valid")
    rows = [("(defaults)", config.defaults)]
    # A type's row is what a layer of that type gets unless its name has an override.
    rows += [(f"type {kind}", config.for_layer("", kind)) for kind in config.layer_types]
    rows += [(name, config.for_layer(name)) for name in config.layers]
    width = max(len(label) for label, _ in rows)
    for label, layer in rows:
        line = describe(layer)
        override = config.layers.get(label)
        weights = None if override is None else override.retrain_weight_config
        if weights is not None and weights.channel_wise is None:
            # "channel_wise": null: AMCT's default for the layer's type, not known here
            by_type = f"by type (false for {', '.join(PER_TENSOR_TYPES)})"
            line = line.replace("channel_wise=true", f"channel_wise={by_type}")
        print(f"{label.ljust(width)}  {line}")
    if config.layer_types and config.layers:
        print("(layer rows: their type's override applies beneath them in a model)")
    if config.skip_layers:
        print(f"skip_layers: {', '.join(config.skip_layers)}")
    if config.skip_layer_types:
        print(f"skip_layer_types: {', '.join(config.skip_layer_types)}")
    if config.fakequant_precision_mode != "DEFAULT":
        print(f"fakequant_precision_mode: {config.fakequant_precision_mode}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qatcore")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check-config", help="validate a configuration file and print it resolved"
    )
    check.add_argument("file")
    args = parser.parse_args(argv)
    return check_config(args.file)


if __name__ == "__main__":
    sys.exit(main())
