"""Calibration under ``torch.distributed``: every rank calibrates on the union of the
ranks' batches."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

import qatcore


def gather_calibration(cal: qatcore.Calibrator) -> None:
    """Add the other ranks' observations to ``cal`` (a collective: every rank calls it
    together). Without a process group of two or more ranks, nothing happens."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, cal.state_dict())
    cal.merge_gathered(states, dist.get_rank())
