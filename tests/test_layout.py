"""The package's shape: a framework-free core, and a repository that is its own reference."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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


# The architecture read from the source tree: the Python package has no import cycle
# (function-level imports count) and no module reaches into another's underscore names;
# only the Python binding folder of csrc/ knows pybind11; no source file grows past a
# size a reader can hold.

PACKAGE = ROOT / "python" / "qatcore"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
#: The compiled extension: a module, though no .py file holds it.
EXTENSION = "qatcore._core"


def is_module(name: str) -> bool:
    return name in MODULES or name == EXTENSION


def absolute(node: ast.ImportFrom, importer: str) -> str:
    """The module an ``ImportFrom`` reads from, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(importer: str) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) for every import anywhere in the module's code."""
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"))
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node, importer)
            found += [(source, alias.name, node.lineno) for alias in node.names]
    return found


def edges(importer: str) -> set[str]:
    """The package modules whose code runs because this module imports them by name."""
    out = set()
    for source, name, _ in imports(importer):
        if name is not None and is_module(f"{source}.{name}"):
            out.add(f"{source}.{name}")
        elif is_module(source):
            out.add(source)
    return out - {EXTENSION, importer}


def test_the_tree_was_found() -> None:
    # Guards the tests below against passing on an empty or misread tree.
    assert {"qatcore", "qatcore.torch", "qatcore.ulq"} <= set(MODULES)
    assert "qatcore.ulq" in edges("qatcore")
    assert "qatcore._backend" in edges("qatcore")


def test_the_package_has_no_import_cycle() -> None:
    graph = {m: edges(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = [*path[path.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_module_imports_another_modules_underscore_names() -> None:
    hits = []
    for importer in MODULES:
        for source, name, line in imports(importer):
            if (
                name is not None
                and name.startswith("_")
                and not name.startswith("__")
                and source.startswith("qatcore")
                and source != EXTENSION
                and not is_module(f"{source}.{name}")
            ):
                hits.append(f"{MODULES[importer].relative_to(ROOT)}:{line}: {source}.{name}")
    assert hits == []


def test_no_module_reads_another_modules_underscore_attributes() -> None:
    """``qatcore.config._x`` or ``mod._x`` where ``mod`` is an imported package module."""
    hits = []
    for importer, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: dict[str, str] = {}  # local name -> package module
        for source, name, _ in imports(importer):
            if name is None and source.startswith("qatcore"):
                bound[source.split(".")[0]] = source.split(".")[0]
            elif name is not None and is_module(f"{source}.{name}"):
                bound[name] = f"{source}.{name}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if not isinstance(base, ast.Name) or base.id not in bound:
                continue
            target = bound[base.id]
            for attr in reversed(chain):
                if attr.startswith("_") and not attr.startswith("__"):
                    if not is_module(f"{target}.{attr}") and target != EXTENSION:
                        hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {target}.{attr}")
                    break
                if not is_module(f"{target}.{attr}"):
                    break
                target = f"{target}.{attr}"
    assert sorted(set(hits)) == []


def test_only_the_python_binding_folder_includes_pybind11() -> None:
    sources = [p for p in (ROOT / "csrc").rglob("*") if p.is_file()]
    assert any("pybind11" in p.read_text(encoding="utf-8") for p in sources)
    users = sorted(
        str(p.relative_to(ROOT)) for p in sources if "pybind11" in p.read_text(encoding="utf-8")
    )
    assert [u for u in users if not u.startswith("csrc/bindings/python/")] == []


def test_no_source_file_passes_the_size_a_reader_can_hold() -> None:
    files = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyi")]
    files += [p for p in (ROOT / "csrc").rglob("*") if p.is_file()]
    lengths = {
        str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in files
    }
    assert {f: n for f, n in lengths.items() if n > MAX_LINES} == {}
