"""Checkpoint loading for the quantizer modules: every quantizer entry of a checkpoint is
checked, once per load, before any value of the model is loaded.

PyTorch loads a module's own entries before its children's, and the layers one by one,
so an entry found bad late would leave earlier values loaded. ``check_before_loading``
(a ``load_state_dict`` pre-hook on a prepared model and on each quantized layer) checks
the entries of every :class:`CheckedState` module below it first. The outermost hook of
a load does the work; the hooks and modules it reaches later find their entries already
checked (the same objects) and take the result instead of checking again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn


def to_torch_state(state: Any) -> Any:
    """NumPy arrays as tensors, so checkpoints load with torch.load(weights_only=True)."""
    if isinstance(state, dict):
        return {k: to_torch_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return torch.from_numpy(state)
    return state


def to_numpy_state(state: Any) -> Any:
    """Tensors as NumPy arrays sharing their memory (the checks copy what they keep)."""
    if isinstance(state, dict):
        return {k: to_numpy_state(v) for k, v in state.items()}
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().numpy()
    return state


def tensor_entry(state_dict: dict[str, Any], key: str, shape: torch.Size) -> Any:
    """The checkpoint entry ``key`` (None when absent) as a NumPy array, after checking that
    it is a tensor of ``shape`` (the parameter it replaces)."""
    value = state_dict.get(key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.shape != shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{key}: expected a tensor of shape {tuple(shape)}, got {got}")
    return value.detach().cpu().float().numpy()


class _Checked(NamedTuple):
    entries: dict[str, Any]  # the entries checked, by key: the same objects mean the same load
    result: Any


class CheckedState(nn.Module):
    """A module whose checkpoint entries (``_state_names`` under its prefix) are checked
    before anything is loaded. Subclasses implement ``check_entries``; ``self._checked``
    holds its result while the module loads."""

    _state_names: tuple[str, ...] = ()

    def check_entries(self, state_dict: dict[str, Any], prefix: str) -> Any:
        """Check this module's entries (keys under ``prefix``) without loading them: a bad
        one raises ``ValueError`` naming its key. Returns what loading needs."""
        raise NotImplementedError

    def _entries(self, state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
        keys = (prefix + name for name in self._state_names)
        return {k: state_dict[k] for k in keys if k in state_dict}

    def _checked_entries(self, state_dict: dict[str, Any], prefix: str) -> _Checked:
        """The check of these entries: the one an outer hook made in this load, else a new one."""
        entries = self._entries(state_dict, prefix)
        done = self.__dict__.get("_pending")
        if (
            done is not None
            and done.entries.keys() == entries.keys()
            and all(done.entries[k] is v for k, v in entries.items())
        ):
            return done
        return _Checked(entries, self.check_entries(state_dict, prefix))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        checked = self._checked_entries(state_dict, prefix)
        self.__dict__.pop("_pending", None)
        self.__dict__["_checked"] = checked.result
        try:
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        finally:
            self.__dict__.pop("_checked", None)


def check_before_loading(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Check every quantizer entry of a checkpoint for ``module`` and its submodules before
    anything is loaded (a ``load_state_dict`` pre-hook): a bad entry raises ``ValueError``
    naming its key, and no parameter, buffer or state of the model has changed."""
    found = [
        (sub, f"{prefix}{name}." if name else prefix)
        for name, sub in module.named_modules()
        if isinstance(sub, CheckedState)
    ]
    checked = [(sub, sub._checked_entries(state_dict, p)) for sub, p in found]
    for sub, c in checked:  # only once every entry passed
        sub.__dict__["_pending"] = c
