"""ActivationQuantizer and WeightQuantizer: calibration, steps, state, and a training run."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest

import qatcore
import reference as ref
from helpers import assert_clip_grads_close, assert_same_floats
from qatcore import (
    ActivationQuantizer,
    QuantizationWarning,
    RetrainDataConfig,
    RetrainWeightConfig,
    WeightQuantizer,
)


def batches(n: int, relu: bool = False, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal((8, 64)).astype(np.float32) * 1.5 for _ in range(n)]
    return [np.maximum(b, 0) for b in out] if relu else out


def test_calibration_runs_ifmr_on_the_observed_batches() -> None:
    q = ActivationQuantizer(RetrainDataConfig(batch_num=3))
    data = batches(3)
    with pytest.raises(RuntimeError, match="^forward: the quantizer is not calibrated; call obs"):
        q.forward(data[0])
    with pytest.raises(RuntimeError, match="^calibrate: observe"):
        q.calibrate()
    for b in data:
        q.observe(b)
    with pytest.raises(RuntimeError, match="^observe: already observed batch_num=3 batches"):
        q.observe(data[0])
    q.calibrate()
    want = qatcore.ifmr(qatcore.Histogram().observe(np.concatenate(data)))
    assert (q.clip_min, q.clip_max) == (want.clip_min, want.clip_max)
    assert q.fixed_min is False and q.params == want.params
    assert_same_floats(q.forward(data[1]), qatcore.fake_quantize(data[1], want.params))
    with pytest.raises(RuntimeError, match="^observe: calibration is finished"):
        q.observe(data[0])


def test_fixed_min_is_decided_from_the_data() -> None:
    relu = ActivationQuantizer(RetrainDataConfig(batch_num=2))
    for b in batches(2, relu=True):
        relu.observe(b)
    relu.calibrate()
    assert relu.fixed_min is True and relu.clip_min == 0.0 and relu.params.zero_point == -128
    signed = ActivationQuantizer(RetrainDataConfig(batch_num=2, fixed_min=True))
    for b in batches(2):  # configured true wins over the data
        signed.observe(b)
    assert signed.calibrate().fixed_min is True


def test_configured_clips_are_kept_and_fill_the_rest() -> None:
    both = ActivationQuantizer(RetrainDataConfig(clip_max=4.0, clip_min=-3.0))
    both.calibrate()  # no data needed
    assert (both.clip_min, both.clip_max, both.fixed_min) == (-3.0, 4.0, False)
    upper = ActivationQuantizer(RetrainDataConfig(clip_max=4.0))
    upper.observe(batches(1)[0]).calibrate()
    assert upper.clip_max == 4.0 and upper.clip_min < 0
    assert upper.clip_min == qatcore.ifmr(qatcore.Histogram().observe(batches(1)[0])).clip_min


def test_warns_once_outside_the_recommended_range() -> None:
    q = ActivationQuantizer(RetrainDataConfig(clip_max=50.0, clip_min=-0.01, batch_num=2))
    data = batches(2)
    for b in data:
        q.observe(b)
    with pytest.warns(
        QuantizationWarning,
        match=r"^clip_max=50.0 lies outside the recommended "
        r"range \[.*\] \(0.3 to 1.7 x the observed max",
    ):
        q.calibrate()
    assert q.state_dict()["calibration"]["warned"] is True
    inside = ActivationQuantizer(RetrainDataConfig(clip_max=float(np.max(data[0]))))
    inside.observe(data[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inside.calibrate()
    low = ActivationQuantizer(RetrainDataConfig(clip_max=float(np.max(data[0])), clip_min=-0.01))
    low.observe(data[0])
    with pytest.warns(QuantizationWarning, match=r"^clip_min=-0.01 lies outside .* observed min"):
        low.calibrate()


def test_backward_and_clip_updates() -> None:
    q = ActivationQuantizer(RetrainDataConfig(clip_max=2.0, clip_min=-1.0))
    q.calibrate()
    x = batches(1)[0]
    g = np.ones_like(x)
    r = q.backward(g, x)
    gx, gmin, gmax = ref.ulq_backward(g, x, -1.0, 2.0)
    assert_same_floats(r.grad_input, gx)
    assert float(r.grad_clip_max) == pytest.approx(gmax, rel=1e-6)
    assert float(r.grad_clip_min) == pytest.approx(gmin, rel=1e-6)
    q.clip_max = 2.5
    assert q.clip_max == 2.5 and q.params == qatcore.ulq_params(-1.0, 2.5)
    with pytest.raises(ValueError, match="^clip_min: expected a finite number"):
        q.clip_min = float("nan")


def test_state_dict_resumes_calibration_and_training() -> None:
    data = batches(3)
    a = ActivationQuantizer(RetrainDataConfig(batch_num=3))
    a.observe(data[0])
    state = a.state_dict()
    assert state["calibration"]["histogram"] is not None
    assert state["clip_min"] is None and state["clip_max"] is None
    b = ActivationQuantizer(RetrainDataConfig(batch_num=3))
    b.load_state_dict(state)
    for q in (a, b):
        q.observe(data[1]).observe(data[2]).calibrate()
    assert (a.clip_min, a.clip_max) == (b.clip_min, b.clip_max)
    a.clip_max = 3.25
    c = ActivationQuantizer(RetrainDataConfig(batch_num=3))
    c.load_state_dict(a.state_dict())
    saved = c.state_dict()
    assert c.calibrated and c.clip_max == 3.25 and saved["calibration"]["histogram"] is None
    # Each value once: the clips are the quantizer's, the calibration state holds none.
    assert saved["clip_max"] == 3.25 and "clip_max" not in saved["calibration"]
    assert_same_floats(c.forward(data[0]), a.forward(data[0]))
    with pytest.raises(ValueError, match="^state: expected a dict with the keys"):
        c.load_state_dict({})


def _calibrating_state() -> dict:
    q = ActivationQuantizer(RetrainDataConfig(batch_num=2))
    q.observe(batches(1)[0])
    return q.state_dict()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s["calibration"].update(calibrated="False"),
            r"^state\['calibration'\]\['calibrated'\]: expected True or False, got 'False'",
        ),
        (
            lambda s: s["calibration"].update(observed=[float("nan"), 1.0]),
            r"^state\['calibration'\]\['observed'\]: expected finite values",
        ),
        (
            lambda s: s["calibration"].update(batches_observed=True),
            r"^state\['calibration'\]\['batches_observed'\]: expected an int",
        ),
        (
            lambda s: s["calibration"].update(batches_observed=3),
            r"^state\['calibration'\]\['batches_observed'\]: expected 0..2",
        ),
        (
            lambda s: s["calibration"].update(histogram={"format": "other"}),
            r"^state\['calibration'\]\['histogram'\]: state: expected format",
        ),
        (
            lambda s: s["calibration"].update(clip_max=1.0),
            r"^state\['calibration'\]: expected the keys .* unknown \['clip_max'\]",
        ),
        (lambda s: s.update(clip_max=2.0), r"^state: expected no clips before calibration"),
    ],
)
def test_activation_load_refuses_bad_state_and_changes_nothing(edit, message) -> None:
    q = ActivationQuantizer(RetrainDataConfig(batch_num=2))
    data = batches(2)
    q.observe(data[0])
    before = q.state_dict()
    state = _calibrating_state()
    edit(state)
    with pytest.raises(ValueError, match=message):
        q.load_state_dict(state)
    after = q.state_dict()
    assert after["calibration"]["batches_observed"] == before["calibration"]["batches_observed"]
    assert after["calibration"]["observed"] == before["calibration"]["observed"]
    np.testing.assert_array_equal(
        after["calibration"]["histogram"]["counts"], before["calibration"]["histogram"]["counts"]
    )


def test_activation_load_refuses_nan_clips_after_calibration() -> None:
    q = ActivationQuantizer(RetrainDataConfig(clip_max=2.0, fixed_min=True))
    q.calibrate()  # both bounds known without data
    state = q.state_dict()
    state["clip_max"] = float("nan")
    with pytest.raises(ValueError, match=r"^state\['clip_max'\]: expected a finite number"):
        q.load_state_dict(state)
    assert q.clip_max == 2.0


@pytest.mark.parametrize("channel_wise", [True, False])
def test_weight_quantizer_arq(channel_wise: bool) -> None:
    w = np.random.default_rng(1).standard_normal((16, 8, 3, 3)).astype(np.float32)
    q = WeightQuantizer(RetrainWeightConfig(channel_wise=channel_wise))
    assert_same_floats(q.forward(w), ref.arq(w, channel_wise)[0])
    g = np.full_like(w, 0.5)
    r = q.backward(g, w)
    assert r.grad_scale is None
    assert_same_floats(r.grad_weight, g)  # straight-through
    assert not q.scheme.params(w).zero_point.any()
    with pytest.raises(RuntimeError, match="^scale: ARQ has no learned scale"):
        q.scale = np.ones(16, np.float32)


@pytest.mark.parametrize("channel_wise", [True, False])
def test_weight_quantizer_ulq(channel_wise: bool) -> None:
    w = np.random.default_rng(2).standard_normal((16, 24)).astype(np.float32)
    q = WeightQuantizer(
        RetrainWeightConfig(weights_retrain_algo="ulq_quantize", channel_wise=channel_wise)
    )
    y = q.forward(w)
    s = ref.arq_scale(w, channel_wise)  # the scale starts as ARQ's, so does the output
    assert q.scale is not None
    assert_same_floats(q.scale, s.reshape(q.scale.shape))
    assert_same_floats(y, ref.arq(w, channel_wise)[0])
    params = q.scheme.params(w, q.scale)
    assert not params.zero_point.any() and params.axis == (0 if channel_wise else None)
    axis = 0 if channel_wise else None
    g = np.random.default_rng(3).standard_normal(w.shape).astype(np.float32)
    r = q.backward(g, w)
    gw, gs = ref.ulq_weight_backward(g, w, q.scale, axis=axis)
    assert_same_floats(r.grad_weight, gw)
    assert r.grad_scale is not None and r.grad_scale.shape == q.scale.shape
    assert_clip_grads_close(r.grad_scale, gs, "grad_scale")
    # Sums of rounding residues, up to a few 1e-2 here, far above the tolerance: a zeroed or
    # sign-flipped gradient cannot match.
    assert np.abs(gs).max() > 1e-2
    # A narrower scale clips the largest weights: there d is qmin or qmax.
    q.scale = q.scale * np.float32(0.5)
    assert_same_floats(q.forward(w), ref.ulq_weight_forward(w, q.scale, 8, axis))
    r = q.backward(g, w)
    gw, gs = ref.ulq_weight_backward(g, w, q.scale, axis=axis)
    assert_same_floats(r.grad_weight, g)  # unmasked, even where the weights clip
    assert_clip_grads_close(r.grad_scale, gs, "grad_scale with clipping")
    other = WeightQuantizer(q.config, channels=16)
    other.load_state_dict(q.state_dict())
    assert_same_floats(other.forward(w), q.forward(w))


def test_weight_scale_stays_positive() -> None:
    """SPEC "Weight ULQ": a scale set to zero or below counts as EPS; NaN is refused."""
    w = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    q = WeightQuantizer(RetrainWeightConfig(weights_retrain_algo="ulq_quantize"))
    q.forward(w)
    eps = np.float32(qatcore._core.EPS)
    q.scale = np.float32([0.5, 0.0, -3.0, 1e-30])
    assert q.scale is not None and q.scale.tolist() == [0.5, eps, eps, eps]
    assert_same_floats(q.forward(w), ref.ulq_weight_forward(w, q.scale, 8, 0))
    assert np.isfinite(q.backward(np.ones_like(w), w).grad_scale).all()
    before = q.scale
    with pytest.raises(ValueError, match=r"^scale: expected finite values, got \[0.5, nan"):
        q.scale = np.float32([0.5, np.nan, 1, 1])
    with pytest.raises(ValueError, match=r"^scale: expected shape \(4,\), got \(3,\)"):
        q.scale = np.ones(3, np.float32)
    assert_same_floats(q.scale, before)
    scheme = q.scheme  # the scheme's steps apply the same rule to the scale they are given
    assert_same_floats(
        scheme.forward(w, np.float32([-1, -1, -1, -1])), scheme.forward(w, [eps] * 4)
    )


def test_weight_load_refuses_bad_state() -> None:
    w = np.random.default_rng(2).standard_normal((16, 24)).astype(np.float32)
    config = RetrainWeightConfig(weights_retrain_algo="ulq_quantize")
    q = WeightQuantizer(config)
    y = q.forward(w)
    assert set(q.state_dict()) == {"scale"}
    small = WeightQuantizer(config)
    small.forward(w[:8])
    with pytest.raises(ValueError, match=r"^state\['scale'\]: expected \(16,\) .*got shape \(8,\)"):
        q.load_state_dict(small.state_dict())
    bad = q.state_dict()
    bad["scale"] = [float("nan")] * 16
    with pytest.raises(ValueError, match=r"^state\['scale'\]: expected finite values"):
        q.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"^state\['scale'\]: expected a scalar"):
        WeightQuantizer(RetrainWeightConfig("ulq_quantize", channel_wise=False)).load_state_dict(
            q.state_dict()
        )
    with pytest.raises(
        ValueError, match=r"^ckpt: expected a dict with the key scale, got \['clip_max'"
    ):
        q.load_state_dict({"clip_max": [1.0] * 16, "clip_min": [-1.0] * 16}, path="ckpt")
    with pytest.raises(ValueError, match=r"^state\['scale'\]: a scale given for an ARQ"):
        WeightQuantizer().load_state_dict(q.state_dict())
    assert_same_floats(q.forward(w), y)  # unchanged throughout
    # A quantizer that has seen no weights checks the channel count it was given, and
    # refuses a per-channel scale it cannot check rather than fail at the next forward.
    with pytest.raises(ValueError, match=r"^state\['scale'\]: expected \(8,\) .*got shape \(16,\)"):
        WeightQuantizer(config, channels=8).load_state_dict(q.state_dict())
    with pytest.raises(ValueError, match=r"^state\['scale'\]: cannot check a per-channel scale"):
        WeightQuantizer(config).load_state_dict(q.state_dict())
    with pytest.raises(ValueError, match=r"^w: expected 8 channels along axis 0"):
        WeightQuantizer(config, channels=8).forward(w)


def test_a_numpy_model_learns_its_clips() -> None:
    """A linear model trained with manual gradients through both quantizers.

    The activation clips start far too narrow ([-0.3, 0.3] on inputs of about
    +-3): the loss must fall and the clips must widen toward the data's range; the
    weight scales, set from the small initial weights, must grow with them.
    """
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((4, 16)).astype(np.float32)
    x_all = (rng.standard_normal((2048, 16)) * 1.2).astype(np.float32)
    t_all = x_all @ teacher.T
    act = ActivationQuantizer(RetrainDataConfig(clip_max=0.3, clip_min=-0.3))
    weights = WeightQuantizer(RetrainWeightConfig(weights_retrain_algo="ulq_quantize"))
    w = (rng.standard_normal((4, 16)) * 0.1).astype(np.float32)
    act.observe(x_all[:256])
    with pytest.warns(QuantizationWarning):
        act.calibrate()
    weights.initialize(w)
    start = weights.scale

    def step(x: np.ndarray, t: np.ndarray) -> tuple[float, tuple]:
        xq = act.forward(x)
        wq = weights.forward(w)
        err = xq @ wq.T - t
        loss = float(np.mean(err**2))
        dy = (2.0 / err.size) * err
        ga = act.backward(dy @ wq, x)
        gw = weights.backward(dy.T @ xq, w)
        return loss, (ga, gw)

    losses = []
    for _ in range(60):
        for i in range(0, len(x_all), 256):
            loss, (ga, gw) = step(x_all[i : i + 256], t_all[i : i + 256])
            w -= 0.05 * gw.grad_weight
            act.clip_max -= 0.05 * float(ga.grad_clip_max)
            act.clip_min -= 0.05 * float(ga.grad_clip_min)
            weights.scale = weights.scale - 1e-4 * gw.grad_scale
        losses.append(loss)
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert act.clip_max > 1.0 and act.clip_min < -1.0, (act.clip_min, act.clip_max)
    # The weights grow about tenfold from their small start; so must their scales.
    assert (weights.scale > 3 * start).all(), (start, weights.scale)


def test_merge_gathered_equals_one_calibrator_over_every_rank_batch() -> None:
    """What each rank does with the states a collective gathered: afterwards every rank
    holds the same histogram, and calibrates as one calibrator over all batches would."""
    data = batches(6)
    config = RetrainDataConfig(batch_num=2)
    ranks = [
        qatcore.Calibrator(config).observe(data[2 * r]).observe(data[2 * r + 1]) for r in range(3)
    ]
    states = [c.state_dict() for c in ranks]
    for r, c in enumerate(ranks):
        c.merge_gathered(states, r)
    whole = qatcore.Histogram().observe(np.concatenate(data))
    found = [c.calibrate() for c in ranks]
    expect = qatcore.ifmr(whole)
    assert {(f.clip_min, f.clip_max) for f in found} == {(expect.clip_min, expect.clip_max)}
    bad = qatcore.Calibrator(config).observe(data[0])
    broken = [states[0], {**states[1], "calibrated": "no"}]
    before = bad.state_dict()
    with pytest.raises(ValueError, match=r"^rank 1's calibration state\['calibrated'\]: expected"):
        bad.merge_gathered(broken, 0)
    assert bad.state_dict()["observed"] == before["observed"]


COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("seen", [0, 1, 2])
def test_quantizers_copy_and_pickle_independently(how: str, seen: int) -> None:
    """Before, during and after calibration: a copy of a Histogram, Calibrator,
    ActivationQuantizer or WeightQuantizer computes what the original computes, bit for
    bit, and changing either leaves the other as it was."""
    make = COPIES[how]
    data = batches(4)
    q = ActivationQuantizer(RetrainDataConfig(batch_num=2))
    for b in data[:seen]:
        q.observe(b)
    if seen == 2:
        q.calibrate()
    c = make(q)
    assert c.calibrator is not q.calibrator
    hist, hist_copy = q.calibrator._histogram, c.calibrator._histogram
    if hist is not None:  # its own lock and arrays
        assert hist_copy._lock is not hist._lock and hist_copy._counts is not hist._counts
    before = q.state_dict()
    for b in data[seen:2]:  # the copy finishes calibrating: the original does not move
        c.observe(b)
    if seen < 2:
        c.calibrate()
        assert not q.calibrated and q.batches_observed == seen
        assert q.state_dict()["calibration"]["observed"] == before["calibration"]["observed"]
        for b in data[seen:2]:
            q.observe(b)
        q.calibrate()
    assert (c.clip_min, c.clip_max) == (q.clip_min, q.clip_max)
    assert_same_floats(c.forward(data[3]), q.forward(data[3]))
    g = np.ones_like(data[3])
    assert_same_floats(c.backward(g, data[3]).grad_input, q.backward(g, data[3]).grad_input)
    c.clip_max = c.clip_max * 2
    assert q.clip_max != c.clip_max

    h = qatcore.Histogram().observe(data[0])
    h2 = make(h)
    h2.observe(data[1])
    assert h.count == data[0].size and h2.count == 2 * data[0].size
    h.observe(data[1])
    assert repr(h) == repr(h2) and np.array_equal(h.counts, h2.counts)

    w = data[2].reshape(8, 64)
    wq = WeightQuantizer(RetrainWeightConfig(weights_retrain_algo="ulq_quantize"))
    if seen:
        wq.forward(w)
    wc = make(wq)
    assert make(wq.scheme) == wq.scheme
    assert_same_floats(wc.forward(w), wq.forward(w))
    wc.scale = wc.scale * np.float32(0.5)
    assert not np.array_equal(wc.scale, wq.scale)
