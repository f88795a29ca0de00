"""What a new user meets without an extra installed: the error names the extra."""

from __future__ import annotations

import sys

import pytest

from helpers import require_module, run_python


def test_qatcore_torch_without_torch_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
        "import qatcore\n"
        "print('core imported')\n"
        "import qatcore.torch\n"
    )
    done = run_python(code)
    assert done.returncode == 1 and done.stdout == "core imported\n", done
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ModuleNotFoundError: qatcore.torch needs PyTorch, which is not installed; "
        "install it with pip install 'qatcore[torch]'"
    ), done.stderr


@pytest.mark.parametrize("module", ["onnx", "onnxscript"])
def test_export_onnx_without_onnx_names_the_extra(module, monkeypatch, tmp_path) -> None:
    torch = require_module("torch")
    import qatcore.torch as qt

    model = qt.prepare_qat(torch.nn.Sequential(torch.nn.Linear(4, 3)))
    model(torch.randn(8, 4))
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(
        ModuleNotFoundError,
        match=rf"^export_onnx needs onnx and onnxscript \({module} is not installed\); "
        r"install them with pip install 'qatcore\[onnx\]'$",
    ):
        qt.export_onnx(model.eval(), torch.randn(2, 4), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
