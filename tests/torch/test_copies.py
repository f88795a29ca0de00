"""Prepared models copy and pickle whole: copy.deepcopy, pickle, torch.save/torch.load."""

from __future__ import annotations

import copy
import io
import pickle

import pytest

from helpers import require_module

torch = require_module("torch")

import qatcore.torch as qt  # noqa: E402
from qatcore import RetrainConfig  # noqa: E402
from torch_helpers import assert_same_state, small_model, train_steps  # noqa: E402


def _torch_save_load(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda model: pickle.loads(pickle.dumps(model)),
    "torch.save": _torch_save_load,
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("seen", [0, 1, 3], ids=["before", "mid-calibration", "after"])
def test_a_prepared_model_copies_and_trains_on_as_the_original(how: str, seen: int) -> None:
    """A copy made before calibration, after one of batch_num=2 batches or after it, and
    the original, each trained on the same batches with the same optimizer settings, end
    with the same parameters, buffers, calibration state and losses; training the copy
    leaves the original untouched."""
    config = RetrainConfig.from_dict(
        {
            "retrain_data_config": {"batch_num": 2},
            "layers": {"3": {"retrain_weight_config": {"weights_retrain_algo": "ulq_quantize"}}},
        }
    )
    g = torch.Generator().manual_seed(12)
    batches = [torch.randn(8, 2, 10, generator=g) for _ in range(7)]
    targets = [torch.randint(0, 3, (8,), generator=g) for _ in range(7)]
    model = qt.prepare_qat(small_model(), config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, batches[:seen], targets[:seen])
    clone = COPIES[how](model)
    assert clone is not model
    for (name, a), b in zip(model.named_parameters(), clone.parameters()):
        assert a.data_ptr() != b.data_ptr(), name
    cal, cal_copy = model[0].act_quant.calibrator, clone[0].act_quant.calibrator
    assert cal_copy is not cal
    if cal._histogram is not None:  # its own lock and counts
        assert cal_copy._histogram._lock is not cal._histogram._lock
        assert cal_copy._histogram._counts is not cal._histogram._counts
    opt_copy = torch.optim.Adam(clone.parameters(), lr=1e-2)
    # A copy of the optimizer's state: Optimizer.load_state_dict keeps the tensors it is
    # given, which the original's optimizer would then share.
    opt_copy.load_state_dict(copy.deepcopy(opt.state_dict()))
    before = copy.deepcopy(model.state_dict())
    losses_copy = train_steps(clone, opt_copy, batches[seen:], targets[seen:])
    assert_same_state(model.state_dict(), before, "the original after training the copy")
    losses = train_steps(model, opt, batches[seen:], targets[seen:])
    assert losses == losses_copy
    assert_same_state(clone.state_dict(), model.state_dict(), "copy against original")
    assert_same_state(opt_copy.state_dict(), opt.state_dict(), "optimizers")
    assert all(m.act_quant.calibrated for m in qt.quantized_layers(clone).values())
    probe = batches[0]
    assert torch.equal(clone.eval()(probe), model.eval()(probe))
