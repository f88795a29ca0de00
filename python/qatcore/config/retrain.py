"""``RetrainConfig``: the data model's ``RetrainSettings`` with its three file forms, each
read and written by its own module (``canonical``, ``amct_graph``, ``amct_cfg``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import amct_cfg, amct_graph, canonical
from .model import RetrainSettings

__all__ = ["RetrainConfig"]


class RetrainConfig(RetrainSettings):
    """Global defaults, overrides by layer type and by layer name, and skip lists (see
    ``RetrainSettings``, whose fields and ``for_layer`` it has), read from and written
    to its file forms.

    ``RetrainConfig.load(source)`` reads any of the three forms (see ``qatcore.config``).
    """

    # ---- reading -----------------------------------------------------------------

    @classmethod
    def load(
        cls, source: str | os.PathLike[str] | Mapping[str, Any] | RetrainConfig
    ) -> RetrainConfig:
        """Any of the three forms, from a dict, a text or the path of a file.

        A dict, or a text or file starting with ``{``, is JSON: AMCT's graph-mode
        layout when it has a ``version`` key, else the canonical layout (of which
        AMCT's single-op ``config=`` dict is the top level). A ``.cfg`` file, or any
        other text, is AMCT's protobuf text format (needs ``protobuf``).
        """
        if isinstance(source, RetrainConfig):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(
                "source: expected a path, a JSON or .cfg text, a dict or a RetrainConfig, "
                f"got {type(source).__name__}"
            )
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_dict(canonical.parse_json(source, "config"))
        if (
            isinstance(source, str)
            and not os.path.exists(source)
            and amct_cfg.looks_like_cfg(source)
        ):
            return amct_cfg.read(source, "config", cls)
        path = os.fspath(source)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith(".cfg") or not (path.endswith(".json") or text.lstrip()[:1] == "{"):
            return amct_cfg.read(text, path, cls)
        return cls.from_dict(canonical.parse_json(text, path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainConfig:
        """The canonical layout (or AMCT's single-op dict, its top level), or AMCT's
        graph-mode JSON, recognised by its ``version`` key."""
        data = canonical.as_mapping(data, "config")
        if amct_graph.is_graph_layout(data):
            return amct_graph.read(data, cls)
        return canonical.read(data, cls)

    # ---- writing -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The canonical layout: full defaults, the overrides' fields, the skip lists."""
        return canonical.to_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        return canonical.to_json(self, indent)

    def to_amct(self, layers: Mapping[str, str]) -> dict[str, Any]:
        """AMCT's graph-mode JSON (as a dict) for a model whose quantizable layers are
        ``layers`` (name -> type, e.g. ``{"conv1": "Conv2d"}``; ``qatcore.torch``'s
        ``to_amct_json(model, config)`` finds them): every layer listed with its resolved
        settings, so that AMCT and qatcore read the same thing from the file. Settings
        that layout cannot hold are a ``ConfigError`` naming the layer."""
        return amct_graph.write(self, layers)
