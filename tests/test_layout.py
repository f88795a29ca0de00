"""The package's shape: a framework-free core, and a repository that is its own reference."""

from __future__ import annotations

from pathlib import Path

from helpers import run_python

ROOT = Path(__file__).resolve().parent.parent


def test_import_qatcore_imports_no_framework() -> None:
    code = (
        "import sys, qatcore\n"
        "qatcore.Calibrator(); qatcore.WeightQuantizer(); qatcore.RetrainConfig()\n"
        "loaded = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib', 'sklearn',"
        " 'google.protobuf')"
        " if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"import qatcore loaded {proc.stdout.strip()}"


def test_nothing_points_outside_the_repository() -> None:
    """The contract is docs/SPEC.md: no README, docstring or test names a file beside the clone."""
    assert (ROOT / "docs" / "SPEC.md").is_file()
    files = [ROOT / "README.md", *ROOT.glob("python/**/*.py"), *ROOT.glob("tests/*.py")]
    files += [*ROOT.glob("bench/*.py"), *ROOT.glob("docs/*.md"), *ROOT.glob("csrc/**/*.[ch]*")]
    outside = "../" + "shared"  # split, so this file does not match itself
    hits = [str(f.relative_to(ROOT)) for f in files if outside in f.read_text(encoding="utf-8")]
    assert hits == []


def test_plot_without_matplotlib_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import numpy as np, qatcore\n"
        "r = qatcore.ifmr(np.linspace(-1, 1, 101, dtype=np.float32))\n"
        "try:\n"
        "    r.plot()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "IfmrResult.plot needs matplotlib, which is not installed: pip install 'qatcore[plot]'"
    )


def test_only_the_python_binding_includes_pybind11() -> None:
    """The core (checks, operations, executors, kernels) knows no front end."""
    sources = [*ROOT.glob("csrc/**/*.h"), *ROOT.glob("csrc/**/*.cpp")]
    binding = ROOT / "csrc" / "bindings" / "python"
    hits = [f for f in sources if "pybind11" in f.read_text(encoding="utf-8")]
    outside = [str(f.relative_to(ROOT)) for f in hits if not f.is_relative_to(binding)]
    assert hits and outside == []
