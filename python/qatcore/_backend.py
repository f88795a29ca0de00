"""Instruction-set and thread control for the native kernels."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from . import _core

#: Instruction-set levels, lowest first (named by csrc/dispatch.cpp). Each one the CPU
#: has is bit-identical.
ISA_LEVELS: tuple[str, ...] = _core.ISA_LEVELS


def available_isas() -> list[str]:
    """The levels this CPU (and OS) can run, lowest first."""
    return list(_core.available_isas())


def get_isa() -> str:
    """The level the kernels run at now."""
    return _core.isa()


def set_isa(isa: str) -> str:
    """Switch the kernels to ``isa`` and return the previous level.

    Raises ``ValueError`` for an unknown name or a level this CPU lacks.
    """
    if not isinstance(isa, str):
        raise TypeError(f"isa: expected one of {ISA_LEVELS}, got {isa!r}")
    return _core.set_isa(isa)


def get_num_threads() -> int:
    """Threads a kernel call may use (the calling thread included)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Let each kernel call use up to ``n`` threads. Results do not depend on ``n``.

    Where an OpenMP runtime is loaded (PyTorch's CPU builds load one), kernel calls run
    on its threads, which are PyTorch's intra-op workers, and use at most its own
    thread setting (``torch.set_num_threads``) as well."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int >= 1, got {n!r}")
    _core.set_num_threads(n)


@contextmanager
def use_backend(isa: str | None = None, num_threads: int | None = None) -> Iterator[None]:
    """Run the block at ``isa`` and/or ``num_threads``, restoring both afterwards."""
    old_isa, old_threads = get_isa(), get_num_threads()
    try:
        if isa is not None:
            set_isa(isa)
        if num_threads is not None:
            set_num_threads(num_threads)
        yield
    finally:
        _core.set_isa(old_isa)
        _core.set_num_threads(old_threads)


def backend_info() -> dict[str, object]:
    """What the kernels run on: ``isa``, ``available_isas``, ``num_threads``, ``version``..."""
    return {
        "isa": get_isa(),
        "best_isa": _core.best_isa(),
        "available_isas": available_isas(),
        "num_threads": get_num_threads(),
        "threads_from": "openmp" if _core.openmp_threads() else "qatcore pool",
        "version": _core.__version__,
    }


def apply_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Apply ``QATCORE_ISA`` (a cap on the level), ``QATCORE_NUM_THREADS`` and
    ``QATCORE_OPENMP`` (``0``: never run on the process's OpenMP threads)."""
    cap = environ.get("QATCORE_ISA", "").strip().lower()
    if cap:
        if cap not in ISA_LEVELS:
            raise ValueError(f"QATCORE_ISA: expected one of {ISA_LEVELS}, got {cap!r}")
        allowed = [
            isa for isa in available_isas() if ISA_LEVELS.index(isa) <= ISA_LEVELS.index(cap)
        ]
        _core.set_isa(allowed[-1])
    threads = environ.get("QATCORE_NUM_THREADS", "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"QATCORE_NUM_THREADS: expected an integer >= 1, got {threads!r}")
        _core.set_num_threads(int(threads))
    openmp = environ.get("QATCORE_OPENMP", "").strip()
    if openmp:
        if openmp not in ("0", "1"):
            raise ValueError(f"QATCORE_OPENMP: expected 0 or 1, got {openmp!r}")
        _core.set_openmp_allowed(openmp == "1")
