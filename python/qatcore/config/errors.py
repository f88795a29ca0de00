"""What a configuration's errors and warnings are, and how a source names its places.

Every check raises a ``ConfigError`` whose ``path`` locates the value. The data model
checks with the canonical layout's names; each reader gives its own (``Paths``), so a
message names the place in the file the user wrote.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CANONICAL",
    "ConfigError",
    "Paths",
    "QuantizationWarning",
    "got",
    "join_path",
    "warn_at",
]


class QuantizationWarning(UserWarning):
    """A setting that works but that the seed advises against."""


class ConfigError(ValueError):
    """A configuration value that the seed does not allow. ``path`` locates it."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.path}" if prefix else self.path, self.problem)


def got(value: object) -> str:
    """The value received, as every message ends: ``got -2 (int)``."""
    return f"got {value!r} ({type(value).__name__})"


def join_path(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix and rest else prefix or rest


def warn_at(path: str, message: str, stacklevel: int) -> None:
    """A ``QuantizationWarning`` that names where in the source the setting is."""
    warnings.warn(f"{path}: {message}", QuantizationWarning, stacklevel=stacklevel + 1)


def _canonical_layer(name: str) -> str:
    return f"layers.{name}"


def _canonical_type(name: str) -> str:
    return f"layer_types.{name}"


def _same(rest: str) -> str:
    return rest


@dataclass(frozen=True)
class Paths:
    """How a source names the places of a configuration: where a layer's or a type's
    override sits (``layers.conv1``; a top-level section of a graph-mode JSON; an
    ``override_layer_configs`` entry of a ``.cfg``) and the fields below it, given by
    their canonical path (``retrain_data_config.clip_max`` is
    ``retrain_data_quant_config.ulq_quantize.clip_max_min.clip_max`` in a ``.cfg``)."""

    layer: Callable[[str], str] = _canonical_layer
    layer_type: Callable[[str], str] = _canonical_type
    field: Callable[[str], str] = _same

    def locate(self, error: ConfigError, source: str) -> ConfigError:
        """``error``, raised with a canonical path below the place ``source``, as the
        source names it."""
        return ConfigError(join_path(source, self.field(error.path)), error.problem)


#: The canonical layout's own names.
CANONICAL = Paths()
