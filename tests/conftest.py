from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import pytest
from hypothesis import settings

# tests/torch/ mirrors qatcore.torch. With tests/ on sys.path, where PyTorch is not
# installed, `import torch` would find that folder as an empty namespace package instead
# of failing; the tests that need PyTorch must see it missing and skip.
for _framework in ("torch",):
    _spec = importlib.util.find_spec(_framework)
    if _spec is not None and _spec.origin is None:
        sys.modules[_framework] = None  # type: ignore[assignment]

# CI=... runs the "ci" profile: derandomized, so that a landing run is reproducible
# and the same examples run every time. "dev" (the default) and "long" (a soak run,
# QATCORE_HYPOTHESIS_PROFILE=long) draw new examples each run to keep exploring.
settings.register_profile(
    "ci", max_examples=500, deadline=None, print_blob=True, derandomize=True, database=None
)
settings.register_profile("dev", max_examples=60, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("QATCORE_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def pytest_sessionfinish(session, exitstatus) -> None:
    """With QATCORE_FUZZ_REPORT=FILE, write what the fuzz tests tried (see test_fuzz.py)."""
    path = os.environ.get("QATCORE_FUZZ_REPORT")
    fuzz = sys.modules.get("test_fuzz")
    if path and fuzz is not None:
        with open(path, "w", encoding="utf-8") as f:
            for key, count in sorted(fuzz.TALLY.items()):
                f.write(f"{count:8d}  {key}\n")


@pytest.fixture(scope="session")
def digits_demo():
    """The demo's FP32 training and both QATs (``demo.run``), once per session."""
    from helpers import require_module

    require_module("torch")
    require_module("sklearn")
    from qatcore.torch import demo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        return demo.run(epochs=15, qat_epochs=4, seed=0)


@pytest.fixture(scope="session")
def digits_demo_ulq(digits_demo):
    """The same demo with ``--weights ulq_quantize``: every layer learns its weight scale.
    The FP32 model and torch.ao's QAT are digits_demo's (``demo.run(reuse=...)``)."""
    from helpers import require_module

    require_module("torch")
    require_module("sklearn")
    import qatcore
    from qatcore.torch import demo

    config = qatcore.RetrainConfig.from_dict(
        {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        return demo.run(epochs=15, qat_epochs=4, seed=0, config=config, reuse=digits_demo)
