"""Dispatch, threads and the environment variables that steer them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import qatcore
import reference as ref
from helpers import BACKENDS, assert_same_floats, child_exit_code, require_torch, run_python


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_levels() -> tuple[bool, bool]:
    """(AVX2, AVX-512) as /proc/cpuinfo lists them: the levels' definitions, written here
    independently of csrc/dispatch.cpp."""
    flags = cpu_flags()
    avx2 = {"avx2", "fma"} <= flags
    return avx2, avx2 and {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags


def test_every_level_the_cpu_has_is_available() -> None:
    avx2, avx512 = machine_levels()
    isas = qatcore.available_isas()
    assert isas[0] == "scalar"
    if avx2:
        assert "avx2" in isas
    if avx512:
        assert isas == ["scalar", "avx2", "avx512"]
    assert list(dict.fromkeys(isa for isa, _, _ in BACKENDS)) == isas, "every level is tested"


def test_set_isa_returns_previous_and_validates() -> None:
    best = qatcore.backend_info()["best_isa"]
    with qatcore.use_backend():
        before = qatcore.get_isa()
        assert before in qatcore.available_isas()
        assert qatcore.set_isa("scalar") == before  # the level it replaced
        assert qatcore.get_isa() == "scalar"
        assert qatcore.set_isa(str(best)) == "scalar"
        with pytest.raises(ValueError, match="^isa: expected one of"):
            qatcore.set_isa("sse9")
        with pytest.raises(TypeError, match="^isa: expected one of"):
            qatcore.set_isa(2)  # type: ignore[arg-type]
        missing = [isa for isa in qatcore.ISA_LEVELS if isa not in qatcore.available_isas()]
        for isa in missing:
            with pytest.raises(ValueError, match="is not available on this CPU"):
                qatcore.set_isa(isa)
        assert qatcore.get_isa() == best


def test_backend_info() -> None:
    info = qatcore.backend_info()
    assert info["isa"] in qatcore.ISA_LEVELS
    assert info["available_isas"] == qatcore.available_isas()
    assert info["num_threads"] == qatcore.get_num_threads() >= 1
    assert info["version"] == qatcore.__version__


def test_threads() -> None:
    with qatcore.use_backend(num_threads=3):
        assert qatcore.get_num_threads() == 3
        qatcore.set_num_threads(1)
        assert qatcore.get_num_threads() == 1
        with pytest.raises(ValueError, match="^n: expected an integer >= 1"):
            qatcore.set_num_threads(0)
        with pytest.raises(TypeError, match="^n: expected an int"):
            qatcore.set_num_threads(True)
        assert qatcore.get_num_threads() == 1


def expected_level(cap: str) -> str:
    """The level QATCORE_ISA=cap leaves this machine at: the highest it has up to the cap."""
    avx2, avx512 = machine_levels()
    best_up_to = {
        "scalar": "scalar",
        "avx2": "avx2" if avx2 else "scalar",
        "avx512": "avx512" if avx512 else "avx2" if avx2 else "scalar",
    }
    return best_up_to[cap.lower()]


@pytest.mark.parametrize("cap", ["scalar", "avx2", "avx512", "AVX2"])
def test_qatcore_isa_caps_the_level(cap: str) -> None:
    proc = run_python("import qatcore; print(qatcore.get_isa())", QATCORE_ISA=cap)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected_level(cap)


def test_isa_levels_are_named_lowest_first() -> None:
    assert qatcore.ISA_LEVELS == ("scalar", "avx2", "avx512")
    with pytest.raises(ValueError, match="^isa: expected one of 'scalar', 'avx2', 'avx512', got"):
        qatcore.set_isa("sse9")


def test_environment_errors_are_clear() -> None:
    proc = run_python("import qatcore", QATCORE_ISA="neon")
    assert proc.returncode != 0 and "QATCORE_ISA: expected one of" in proc.stderr
    proc = run_python("import qatcore", QATCORE_NUM_THREADS="zero")
    assert proc.returncode != 0 and "QATCORE_NUM_THREADS: expected an integer >= 1" in proc.stderr
    proc = run_python("import qatcore; print(qatcore.get_num_threads())", QATCORE_NUM_THREADS="3")
    assert proc.stdout.strip() == "3", proc.stderr
    proc = run_python("import qatcore", QATCORE_OPENMP="no")
    assert proc.returncode != 0 and "QATCORE_OPENMP: expected 0 or 1" in proc.stderr


def test_qatcore_openmp_0_keeps_kernels_on_the_pool() -> None:
    require_torch()
    code = "import torch, qatcore; print(qatcore.backend_info()['threads_from'])"
    assert run_python(code, QATCORE_OPENMP="0").stdout.strip() == "qatcore pool"


def test_concurrent_callers_share_the_pool_safely() -> None:
    """Python threads calling at once (the GIL is released): each result stays exact."""
    rng = np.random.default_rng(11)
    weights = [rng.standard_normal((257, 1031)).astype(np.float32) for _ in range(4)]
    expected = [ref.arq(w)[0] for w in weights]
    results: list[np.ndarray | None] = [None] * len(weights)

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = qatcore.arq(weights[i]).output

    with qatcore.use_backend(num_threads=2):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(weights))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for got, want in zip(results, expected):
        assert got is not None
        assert_same_floats(got, want)


def test_pool_survives_fork() -> None:
    parent = (
        "import numpy as np, qatcore\n"
        "qatcore.set_num_threads(2)\n"
        "w = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)\n"
        "a = qatcore.arq(w).output\n"
    )
    assert child_exit_code(parent, "ok = np.array_equal(qatcore.arq(w).output, a)") == "0"
