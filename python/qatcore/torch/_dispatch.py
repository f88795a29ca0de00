"""The device seam: which implementation of an operation runs for a tensor's device and
dtype, decided here and nowhere else.

An implementation is registered per (operation, device type, dtype); the operations are
``arq``, ``ulq_forward``, ``ulq_backward``, ``ulq_weight_forward`` and
``ulq_weight_backward``, with the signatures of ``_portable``. qatcore's C++ kernels are
registered for CPU float32; every other device and dtype (CUDA, float64, bfloat16, ...)
gets the portable PyTorch formulas, as do tensors of mixed devices or dtypes. A new
device's kernels (Triton on CUDA, say) register here and no call site changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

from . import _kernels, _portable

OPERATIONS = ("arq", "ulq_forward", "ulq_backward", "ulq_weight_forward", "ulq_weight_backward")

_REGISTRY: dict[tuple[str, str, torch.dtype], Callable[..., Any]] = {}
_PORTABLE: dict[str, Callable[..., Any]] = {op: getattr(_portable, op) for op in OPERATIONS}
_FORCED_PORTABLE: ContextVar[bool] = ContextVar("qatcore_torch_force_portable", default=False)


def register(operation: str, device_type: str, dtype: torch.dtype, fn: Callable[..., Any]) -> None:
    """Run ``fn`` for ``operation`` when every tensor argument is on ``device_type``
    (``torch.device.type``: "cpu", "cuda", ...) with ``dtype``."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation: expected one of {', '.join(OPERATIONS)}, got {operation!r}")
    _REGISTRY[(operation, device_type, dtype)] = fn


def implementation(operation: str, *tensors: torch.Tensor) -> Callable[..., Any]:
    """The implementation of ``operation`` for ``tensors`` (its tensor arguments): the one
    registered for their device type and dtype, else the portable formulas."""
    first = tensors[0]
    key = (operation, first.device.type, first.dtype)
    if _FORCED_PORTABLE.get() or any(
        t.device.type != key[1] or t.dtype != key[2] for t in tensors[1:]
    ):
        return _PORTABLE[operation]
    return _REGISTRY.get(key, _PORTABLE[operation])


@contextmanager
def force_portable() -> Iterator[None]:
    """Inside this block, ``ArqFunction``, ``UlqFunction``, ``UlqWeightFunction`` (and the
    layers built on them) run the portable PyTorch formulas, the code that runs on CUDA,
    for every tensor, CPU float32 included; the C++ kernels are not called.

    For tests, and for debugging: the two implementations agree bit for bit on outputs
    and ``grad_input`` (clip and scale gradients are sums taken in another order), so a
    result that changes inside the block points at the implementation. The backward of
    a forward run inside the block is portable too, wherever it runs. The setting is
    the current thread's (a ``contextvars`` variable)::

        with qatcore.torch.force_portable():
            loss = loss_fn(model(x), y)
        loss.backward()
    """
    token = _FORCED_PORTABLE.set(True)
    try:
        yield
    finally:
        _FORCED_PORTABLE.reset(token)


for _op in OPERATIONS:
    register(_op, "cpu", torch.float32, getattr(_kernels, _op))
