"""ARQ against the reference: every ISA level, 1 and 2 threads, every layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qatcore
import reference as ref
from helpers import BACKENDS, assert_same_floats, backend, on_every_backend
from strategies import float_tensors, num_bits, tie_weights


def check_against_reference(w: np.ndarray, channel_wise: bool, axis: int, bits: int) -> None:
    y_ref, s_ref = ref.arq(w, channel_wise, axis, bits)
    q_ref, _ = ref.fake_quant(
        w, s_ref, np.zeros(s_ref.shape, np.int64), bits, axis % w.ndim if channel_wise else None
    )
    for label, r in on_every_backend(
        lambda: qatcore.arq(w, channel_wise=channel_wise, axis=axis, num_bits=bits)
    ):
        assert_same_floats(r.params.scale, s_ref, f"{label} scale")
        assert_same_floats(r.output, y_ref, f"{label} output")
        assert np.array_equal(qatcore.quantize(w, r.params), ref.codes(q_ref, bits)), label
        assert r.params.axis == (axis % w.ndim if channel_wise else None)
        assert r.params.zero_point.shape == s_ref.shape and not r.params.zero_point.any()
    for label, p in on_every_backend(
        lambda: qatcore.arq_params(w, channel_wise=channel_wise, axis=axis, num_bits=bits)
    ):
        assert_same_floats(p.scale, s_ref, f"{label} arq_params")


@given(data=st.data(), bits=num_bits, channel_wise=st.booleans())
def test_arq_matches_reference(data: st.DataObject, bits: int, channel_wise: bool) -> None:
    w = data.draw(float_tensors())
    if channel_wise and w.ndim == 0:
        channel_wise = False
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1)) if w.ndim else 0
    check_against_reference(w, channel_wise, axis, bits)


@given(wb=tie_weights())
def test_arq_rounding_ties(wb: tuple[np.ndarray, int]) -> None:
    w, bits = wb
    check_against_reference(w, True, 0, bits)
    check_against_reference(w.T.copy(), True, 1, bits)  # channels last: the column kernels


@given(data=st.data())
def test_arq_non_contiguous_and_in_place(data: st.DataObject) -> None:
    w = data.draw(float_tensors(elements=st.floats(-4, 4, width=32)))
    if w.ndim == 0 or w.size == 0:
        return
    axis = data.draw(st.integers(0, w.ndim - 1))
    expected = qatcore.arq(w, axis=axis)
    # The same values laid out backwards along every axis: a negative-stride view.
    flipped = np.ascontiguousarray(w[(slice(None, None, -1),) * w.ndim])
    view = flipped[(slice(None, None, -1),) * w.ndim]
    assert not view.flags.c_contiguous or w.size == 1
    assert_same_floats(qatcore.arq(view, axis=axis).output, expected.output)
    for label, (out, result) in on_every_backend(
        lambda: (lambda buf: (buf, qatcore.arq(buf, axis=axis, out=buf)))(w.copy())
    ):
        assert result.output is out, label
        assert_same_floats(out, expected.output, f"{label} in place")
        assert result.params == expected.params, label


LAYOUTS = [
    ((64, 3, 3, 3), 0),
    ((3, 3, 5, 64), 3),
    ((16, 64, 3, 3), 1),
    ((300, 1000), 0),
    ((1000, 300), 1),
    ((1, 300_000), 0),
]


@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_arq_real_chunking_is_thread_independent(shape: tuple[int, ...], axis: int) -> None:
    """Default chunk sizes on tensors big enough to be split: same bits at 1 and 2 threads."""
    rng = np.random.default_rng(7)
    w = (
        rng.standard_normal(shape)
        * rng.uniform(0.01, 10, shape[axis]).reshape(
            [-1 if d == axis else 1 for d in range(len(shape))]
        )
    ).astype(np.float32)
    y_ref, s_ref = ref.arq(w, True, axis)
    for label, r in on_every_backend(lambda: qatcore.arq(w, axis=axis), grain=None):
        assert_same_floats(r.output, y_ref, label)
        assert_same_floats(r.params.scale, s_ref, label)
    for label, buf in on_every_backend(
        lambda: (lambda b: (qatcore.arq(b, axis=axis, out=b), b)[1])(w.copy()), grain=None
    ):
        assert_same_floats(buf, y_ref, f"{label} in place")
    _, s_tensor = ref.arq(w, False)
    assert_same_floats(qatcore.arq_params(w, channel_wise=False).scale, s_tensor)


def test_arq_known_values() -> None:
    w = np.array([[1.27, -0.5, 0.0], [0.0, 0.0, 0.0], [-2.56, 1.0, 0.3]], np.float32)
    r = qatcore.arq(w)
    assert r.params.scale[0] == np.float32(1.27) / np.float32(127)  # row 0: hi / qmax
    assert r.params.scale[1] == 1.0  # all-zero channel
    assert r.params.scale[2] == np.float32(2.56) / np.float32(128)  # row 2: -lo / -qmin
    assert r.output[2, 0] == np.float32(-2.56)  # the most negative value does not clip
    assert qatcore.quantize(w, r.params)[2].tolist() == [-128, 50, 15]
    empty = qatcore.arq(np.zeros((0, 4), np.float32), channel_wise=False)
    assert empty.params.scale == 1.0 and empty.output.shape == (0, 4)
    assert qatcore.arq(np.zeros((3, 0), np.float32)).params.scale.tolist() == [1.0, 1.0, 1.0]
    tiny = qatcore.arq(np.full((2, 2), 1e-30, np.float32))
    assert tiny.params.scale.tolist() == [1.0, 1.0] and not tiny.output.any()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(("channel_wise", "axis"), [(True, 0), (True, 1), (False, 0)])
def test_arq_rejects_non_finite_and_keeps_input(bad: float, channel_wise: bool, axis: int) -> None:
    w = np.random.default_rng(3).standard_normal((5, 7)).astype(np.float32)
    w[3, 4] = bad
    original = w.copy()
    for isa, threads, pool in BACKENDS:
        with backend(isa, threads, pool=pool):
            with pytest.raises(
                ValueError, match=r"^w: expected finite values .* at index \(3, 4\)"
            ):
                qatcore.arq(w, channel_wise=channel_wise, axis=axis, out=w)
            assert_same_floats(w, original, "w changed although arq raised")
            with pytest.raises(ValueError, match=r"^w: expected finite values"):
                qatcore.arq_params(w, channel_wise=channel_wise, axis=axis)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.complex128, object])
def test_arq_rejects_non_float_dtypes(dtype: type) -> None:
    with pytest.raises(TypeError, match="^w: expected a real floating-point array"):
        qatcore.arq(np.ones((2, 2), dtype=dtype))


def test_arq_argument_errors_name_the_argument() -> None:
    w = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"^axis: expected an integer in \[-2, 2\) for w"):
        qatcore.arq(w, axis=2)
    with pytest.raises(ValueError, match=r"^axis: expected an integer in \[0, 0\)"):
        qatcore.arq(np.float32(1.0))
    with pytest.raises(TypeError, match="^axis: expected an int"):
        qatcore.arq(w, axis=0.0)  # type: ignore[arg-type]
    for bits in (1, 17, 0, -8):
        with pytest.raises(ValueError, match=r"^num_bits: expected an integer in \[2, 16\]"):
            qatcore.arq(w, num_bits=bits)
    with pytest.raises(TypeError, match="^num_bits: expected an int"):
        qatcore.arq(w, num_bits=8.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_wise: expected True or False"):
        qatcore.arq(w, channel_wise=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^out: expected shape \(4, 3\)"):
        qatcore.arq(w, out=np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="^out: expected dtype float32"):
        qatcore.arq(w, out=np.ones((4, 3), np.float64))
    with pytest.raises(TypeError, match="^out: expected a numpy.ndarray"):
        qatcore.arq(w, out=[[0.0] * 3] * 4)  # type: ignore[arg-type]


def test_arq_accepts_torch_tensors_without_copy() -> None:
    from helpers import require_torch

    torch = require_torch()
    w = torch.randn(8, 4, 3, 3)
    out = torch.empty_like(w)
    r = qatcore.arq(w, out=out.numpy())
    assert r.output.ctypes.data == out.data_ptr()
    assert_same_floats(out.numpy(), ref.arq(w.numpy())[0])
