"""AMCT's facts about layer types, each written once: which types it retrains, and which
it takes per tensor only (and so where a file leaves ``channel_wise`` out)."""

from __future__ import annotations

__all__ = ["AMCT_RETRAIN_TYPES", "PER_TENSOR_TYPES", "type_channel_wise"]

#: The layer types AMCT retrains (its ``RETRAIN_TYPES``); qatcore quantizes those of
#: them its registry holds, and accepts the others in skip lists.
AMCT_RETRAIN_TYPES = (
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Linear",
    "ConvTranspose2d",
    "LSTM",
    "GRU",
    "ConvTranspose1d",
)

#: The layer types whose weights AMCT's graph mode quantizes per tensor only: it refuses
#: ``channel_wise: true`` for them, and a graph-mode JSON or ``.cfg`` that leaves
#: ``channel_wise`` out means false for them (true for every other type).
PER_TENSOR_TYPES = ("Linear",)


def type_channel_wise(layer_type: str | None) -> bool:
    """AMCT's ``channel_wise`` where a graph-mode JSON or ``.cfg`` leaves it out: per
    tensor for ``Linear``, per channel for the convolutions. An override's
    ``"channel_wise": null`` asks for it."""
    return layer_type not in PER_TENSOR_TYPES
