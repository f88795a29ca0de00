"""Running kernels at every ISA level and thread count, comparing floats exactly, and
running Python in a child process."""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TypeVar

import numpy as np

import qatcore
from qatcore import _core

T = TypeVar("T")

try:  # PyTorch loads its OpenMP runtime, whose threads parallel calls then run on
    import torch  # noqa: F401
except ModuleNotFoundError:
    pass

#: Where two threads come from: qatcore's own pool, and the OpenMP team where one is
#: loaded (csrc/exec/).
POOLS = ("qatcore", "openmp") if _core.openmp_threads() else ("qatcore",)

#: Every (isa, threads, pool) the kernels are checked at on this machine.
BACKENDS = [
    (isa, n, pool)
    for isa in qatcore.available_isas()
    for n, pools in ((1, POOLS[:1]), (2, POOLS))
    for pool in pools
]

#: Elements per chunk in property tests: small and odd, so that even tiny
#: arrays are cut into many chunks whose edges fall inside rows and channels,
#: and two threads really share the work.
SMALL_GRAIN = 5


@contextmanager
def backend(
    isa: str, threads: int, grain: int | None = SMALL_GRAIN, pool: str = "qatcore"
) -> Iterator[None]:
    """The kernels at ``isa`` on ``threads`` threads from ``pool``; ``grain`` elements per
    chunk (None: each family's measured grain)."""
    old_grain, old_openmp = _core.get_grain(), _core.openmp_allowed()
    with qatcore.use_backend(isa=isa, num_threads=threads):
        _core.set_grain(grain or 0)
        _core.set_openmp_allowed(pool == "openmp")
        try:
            yield
        finally:
            _core.set_openmp_allowed(old_openmp)
            _core.set_grain(old_grain)


def on_every_backend(
    fn: Callable[[], T], grain: int | None = SMALL_GRAIN
) -> Iterator[tuple[str, T]]:
    """Yields (label, fn()) at every ISA level this CPU has, with 1 and 2 threads (from
    each pool)."""
    for isa, threads, pool in BACKENDS:
        with backend(isa, threads, grain, pool):
            result = fn()
        yield f"{isa}/{threads} threads ({pool})", result


def order_sensitive(
    shape: tuple[int, ...], axis: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(x, g) whose clip and scale gradient sums change when any two of their additions
    change places: in each channel, half the elements come in pairs of opposite g near
    2**40 on the same side far outside any range (so the pairs cancel in every sum), the
    rest are small; all in random positions. Rounded in another order, the small
    remainder comes out different in float32."""
    moved = shape if axis is None else (shape[axis], *shape[:axis], *shape[axis + 1 :])
    channels = 1 if axis is None else moved[0]
    n = math.prod(moved) // max(channels, 1)
    xs, gs = [], []
    for _ in range(channels):
        k = n // 4
        big = rng.uniform(1, 2, k) * 2.0**40
        side = rng.choice([-1e4, 1e4], k)
        order = rng.permutation(n)
        gs.append(np.concatenate([big, -big, rng.standard_normal(n - 2 * k)])[order])
        xs.append(np.concatenate([side, side, rng.standard_normal(n - 2 * k) * 2])[order])
    x = np.asarray(xs, np.float32).reshape(moved)
    g = np.asarray(gs, np.float32).reshape(moved)
    if axis is not None:
        x, g = np.moveaxis(x, 0, axis), np.moveaxis(g, 0, axis)
    return np.ascontiguousarray(x), np.ascontiguousarray(g)


def assert_same_floats(actual: np.ndarray, expected: np.ndarray, label: str = "") -> None:
    """Bit-identical float32 arrays, except that any NaN matches any NaN."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == np.float32, (label, actual.dtype)
    assert actual.shape == expected.shape, (label, actual.shape, expected.shape)
    expected = expected.astype(np.float32)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), f"{label}: NaN positions differ"
    bits_a = actual.view(np.uint32)[~nan_a]
    bits_e = expected.view(np.uint32)[~nan_e]
    bad = np.flatnonzero(bits_a != bits_e)
    if bad.size:
        i = bad[0]
        raise AssertionError(
            f"{label}: {bad.size} of {bits_a.size} values differ, first: "
            f"{actual[~nan_a][i]!r} != {expected[~nan_e][i]!r}"
        )


def assert_clip_grads_close(got: np.ndarray, want: np.ndarray, label: str) -> None:
    """float64 sums returned as float32: within 1e-6 relative, or 1e-6 absolute near zero."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (label, got.shape, want.shape)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{label}: NaN positions differ"
    ok = np.isnan(want) | (np.abs(got - want) <= np.maximum(1e-6 * np.abs(want), 1e-6))
    assert ok.all(), f"{label}: {got[~ok]} != {want[~ok]}"


def require_module(name: str) -> ModuleType:
    """A module the test extra installs: missing, it is a skip only outside CI."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    import pytest

    return pytest.importorskip(name)


def require_torch() -> ModuleType:
    return require_module("torch")


def run_python(
    code: str, *, timeout: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -c code`` in a new process with this environment less its QATCORE_*
    settings, plus ``env``; returns it finished, output captured as text, whatever its
    exit status. Past ``timeout`` seconds (a hang) it raises ``TimeoutExpired``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QATCORE_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m qatcore *args`` with warnings off, so that stderr holds only what
    the command itself prints; returns it finished, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "qatcore", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def child_exit_code(parent: str, child: str) -> str:
    """Runs ``parent`` in a new Python, then forks: the child runs ``child`` (which sets
    ``ok``) and exits 0 if ok, else 3. Returns what the parent printed: the child's exit
    code. A hang in the child fails by the timeout."""
    in_child = "".join(
        f"    {line}\n" for line in [*child.splitlines(), "os._exit(0 if ok else 3)"]
    )
    code = (
        f"import os\n{parent}pid = os.fork()\nif pid == 0:\n{in_child}"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status))\n"
    )
    proc = run_python(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
