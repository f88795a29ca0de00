"""SPEC.md written plainly in NumPy: the definition the kernels are tested against.

Readable first, fast never. Nothing here imports qatcore.
"""

from __future__ import annotations

import math

import numpy as np

EPS = np.float32(2.0**-23)  # FLT_EPSILON


def qrange(num_bits: int) -> tuple[int, int]:
    return -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1


def _along(values: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along `axis` of an ndim-d tensor."""
    if axis is None:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def fake_quant(x, scale, zero_point, num_bits, axis=None):
    """SPEC "Notation". Returns (q, y): q as float64 integers (NaN where x is NaN), y float32.

    q = clamp(rint(x * inv_s) + z, qmin, qmax);  y = float32(q - z) * s
    """
    qmin, qmax = qrange(num_bits)
    x = np.asarray(x, dtype=np.float32)
    s = _along(np.asarray(scale, dtype=np.float32), axis, x.ndim)
    z = _along(np.asarray(zero_point, dtype=np.int64), axis, x.ndim).astype(np.float64)
    inv_s = np.float32(1) / s
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.rint(x * inv_s)  # float32 product, then round half to even
        q = np.clip(t.astype(np.float64) + z, qmin, qmax)  # NaN stays NaN
        # May overflow to inf for |x| within an ulp of FLT_MAX: qmax * (FLT_MAX / qmax).
        y = (q - z).astype(np.float32) * s
    return q, y.astype(np.float32)


def codes(q: np.ndarray, num_bits: int) -> np.ndarray:
    """The integer dtype qatcore returns codes in (int8 up to 8 bits, else int16)."""
    return q.astype(np.int8 if num_bits <= 8 else np.int16)


def arq_scale(w, channel_wise=True, axis=0, num_bits=8):
    """SPEC "ARQ": per channel along `axis` (or one scale), the smallest scale with no clipping.

    hi = max(max(w), 0);  lo = min(min(w), 0);  s = max(hi / qmax, -lo / -qmin);  s < EPS -> 1
    """
    qmin, qmax = qrange(num_bits)
    w = np.asarray(w, dtype=np.float32)
    if channel_wise:
        axis = axis % w.ndim
        others = tuple(d for d in range(w.ndim) if d != axis)
    else:
        others = None
    hi = np.max(w, axis=others, initial=np.float32(0))  # initial=0 is the max(., 0)
    lo = np.min(w, axis=others, initial=np.float32(0))
    s = np.maximum(
        np.asarray(hi, np.float32) / np.float32(qmax),
        -np.asarray(lo, np.float32) / np.float32(-qmin),
    )
    s = np.where(s >= EPS, s, np.float32(1)).astype(np.float32)
    return s.reshape(-1) if channel_wise else s.reshape(())


def arq(w, channel_wise=True, axis=0, num_bits=8):
    """SPEC "ARQ": (fake-quantized w, scales)."""
    w = np.asarray(w, dtype=np.float32)
    s = arq_scale(w, channel_wise, axis, num_bits)
    ax = axis % w.ndim if channel_wise else None
    _, y = fake_quant(w, s, np.zeros(s.shape, np.int64), num_bits, ax)
    return y, s


def ulq_params(clip_min, clip_max, fixed_min=False, num_bits=8):
    """SPEC "ULQ": every per-channel quantity, float32 as written there.

    cmin = 0 if fixed_min else min(clip_min, 0);  cmax = max(clip_max, L * EPS)
    s = (cmax - cmin) / L;  n_lo = rint(cmin * inv_s);  z = qmin - n_lo
    lo_e = s * n_lo;  hi_e = s * (n_lo + L)
    """
    qmin, qmax = qrange(num_bits)
    levels = np.float32(qmax - qmin)
    clip_min = np.asarray(clip_min, dtype=np.float32)
    clip_max = np.asarray(clip_max, dtype=np.float32)
    cmin = np.zeros_like(clip_min) if fixed_min else np.minimum(clip_min, np.float32(0))
    cmax = np.maximum(clip_max, levels * EPS)
    s = (cmax - cmin) / levels
    inv_s = np.float32(1) / s
    n_lo = np.rint(cmin * inv_s)
    return {
        "cmin": cmin,
        "cmax": cmax,
        "scale": s,
        "inv_scale": inv_s,
        "zero_point": (qmin - n_lo.astype(np.int64)).astype(np.int32),
        "lo_e": s * n_lo,
        "hi_e": s * (n_lo + levels),
        "levels": levels,
    }


def ulq_forward(x, clip_min, clip_max, fixed_min=False, num_bits=8, axis=None):
    """SPEC "ULQ" forward: fake quantization with ULQ's scale and zero point."""
    p = ulq_params(clip_min, clip_max, fixed_min, num_bits)
    _, y = fake_quant(x, p["scale"], p["zero_point"], num_bits, axis)
    return y, p


def _ulq_backward_parts(g, x, clip_min, clip_max, fixed_min, num_bits, axis):
    """What SPEC "ULQ" backward is made of, each the shape of x: grad_x (float32), g and
    d = rint(t) - t (float64), the masks upper and lower; and L.

    upper = x > hi_e;  lower = x < lo_e;  grad_x = g where inside, else 0
    t = (cmax if upper else cmin if lower else x) * inv_s
    """
    x = np.asarray(x, dtype=np.float32)
    g = np.asarray(g, dtype=np.float32)
    p = {
        k: _along(np.asarray(v), axis, x.ndim)
        for k, v in ulq_params(clip_min, clip_max, fixed_min, num_bits).items()
    }
    upper = x > p["hi_e"]
    lower = x < p["lo_e"]
    inside = ~upper & ~lower
    grad_x = np.where(inside, g, np.float32(0)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        t = np.where(upper, p["cmax"], np.where(lower, p["cmin"], x)) * p["inv_scale"]
        d = (np.rint(t) - t).astype(np.float64)
    return grad_x, g.astype(np.float64), d, upper, lower, np.float64(p["levels"].reshape(-1)[0])


def ulq_backward_terms(g, x, clip_min, clip_max, fixed_min=False, num_bits=8, axis=None):
    """SPEC "ULQ" backward, before the sums: (grad_x float32, the float64 terms of
    grad_clip_min, the float64 terms of grad_clip_max), each the shape of x.

    e = (rint(t) - t) / L;  grad_clip_max terms: g * (e + upper);
    grad_clip_min terms: g * (lower - e), 0 if fixed_min
    """
    grad_x, g64, d, upper, lower, levels = _ulq_backward_parts(
        g, x, clip_min, clip_max, fixed_min, num_bits, axis
    )
    with np.errstate(invalid="ignore"):
        e = d / levels
        max_terms = g64 * (e + upper)
        min_terms = np.zeros_like(max_terms) if fixed_min else g64 * (lower - e)
    return grad_x, min_terms, max_terms


def ulq_backward(g, x, clip_min, clip_max, fixed_min=False, num_bits=8, axis=None):
    """SPEC "ULQ" backward: (grad_x float32, grad_clip_min float64, grad_clip_max float64),
    the terms of ulq_backward_terms summed over the tensor or over each channel."""
    grad_x, min_terms, max_terms = ulq_backward_terms(
        g, x, clip_min, clip_max, fixed_min, num_bits, axis
    )
    others = None if axis is None else tuple(d for d in range(grad_x.ndim) if d != axis)
    return grad_x, np.sum(min_terms, axis=others), np.sum(max_terms, axis=others)


def ulq_weight_forward(w, scale, num_bits=8, axis=None):
    """SPEC "Weight ULQ" forward: fake quantization with the learnable scale, zero point 0."""
    s = np.asarray(scale, dtype=np.float32)
    _, y = fake_quant(w, s, np.zeros(s.shape, np.int64), num_bits, axis)
    return y


def ulq_weight_backward_terms(g, w, scale, num_bits=8, axis=None):
    """SPEC "Weight ULQ" backward, before the sums: (grad_w float32, the float64 terms
    g * d of the scale gradient), each the shape of w.

    grad_w = g (straight-through, unmasked);  t = w * inv_s
    d = qmin where w < qmin * s, qmax where w > qmax * s, else rint(t) - t
    """
    qmin, qmax = qrange(num_bits)
    w = np.asarray(w, dtype=np.float32)
    g = np.asarray(g, dtype=np.float32)
    s = _along(np.asarray(scale, dtype=np.float32), axis, w.ndim)
    inv_s = np.float32(1) / s
    with np.errstate(over="ignore", invalid="ignore"):
        t = w * inv_s
        d = np.rint(t) - t
        d = np.where(w > np.float32(qmax) * s, np.float32(qmax), d)
        d = np.where(w < np.float32(qmin) * s, np.float32(qmin), d)
        terms = g.astype(np.float64) * d.astype(np.float64)
    return g.copy(), terms


def ulq_weight_backward(g, w, scale, num_bits=8, axis=None):
    """SPEC "Weight ULQ" backward: (grad_w float32, grad_scale float64).

    grad_scale = sum(g * d) / sqrt(N * qmax) over the tensor or over each channel, N its
    element count (0 for a channel of no elements)."""
    _, qmax = qrange(num_bits)
    grad_w, terms = ulq_weight_backward_terms(g, w, scale, num_bits, axis)
    others = None if axis is None else tuple(d for d in range(grad_w.ndim) if d != axis)
    n = grad_w.size if axis is None else grad_w.size // max(1, grad_w.shape[axis])
    total = np.sum(terms, axis=others)
    grad_s = total / math.sqrt(n * qmax) if n else np.zeros_like(total)
    return grad_w, grad_s


def ifmr_candidates(max0, min0, num_bits, with_offset, fixed_min, search_range, search_step):
    """SPEC "IFMR" steps 2 and 3: (ratios, clips, scales, zero_points, valid) per candidate."""
    start, end = search_range
    count = int(np.floor((end - start) / search_step + 1e-6)) + 1  # step 2
    ratios = start + np.arange(count) * search_step
    qmin, qmax = qrange(num_bits)
    with np.errstate(all="ignore"):  # overflowing candidates are marked, not warned about
        if not with_offset and not fixed_min:  # step 3, symmetric
            clips = (ratios * max(max0, -min0)).astype(np.float32)
            scales = clips / np.float32(qmax)
            zero_points = np.zeros(count, np.int32)
        else:  # asymmetric: (min0, c_i) through the ULQ formulas
            clips = (ratios * max0).astype(np.float32)
            p = ulq_params(np.full(count, np.float32(min0)), clips, fixed_min, num_bits)
            scales, zero_points = p["scale"], p["zero_point"]
        scales = np.where(scales >= EPS, scales, np.float32(1)).astype(np.float32)
        # The project's rule where the SPEC is silent (README): only candidates whose
        # grid (clip, scale and both ends, in float32) is finite compete.
        zf = zero_points.astype(np.float32)
        valid = (
            np.isfinite(clips)
            & np.isfinite(scales)
            & np.isfinite(scales * (np.float32(qmin) - zf))
            & np.isfinite(scales * (np.float32(qmax) - zf))
        )
    return ratios, clips, scales, zero_points, valid


def ifmr(
    x,
    num_bits=8,
    with_offset=False,
    fixed_min=False,
    max_percentile=0.999999,
    min_percentile=0.999999,
    search_range=(0.7, 1.3),
    search_step=0.01,
):
    """SPEC "IFMR", exact mode: the start points, the candidates, their losses, the choice."""
    x = np.asarray(x, dtype=np.float32).ravel()
    n = x.size
    ordered = np.sort(x)

    def rank(p):  # step 1, in float64
        return 1 if 1.0 - p < 2.0**-23 else n - int(np.floor(p * n))

    max0 = max(0.0, float(ordered[n - rank(max_percentile)]))
    min0 = 0.0 if fixed_min else min(0.0, float(ordered[rank(min_percentile) - 1]))
    ratios, clips, scales, zero_points, valid = ifmr_candidates(
        max0, min0, num_bits, with_offset, fixed_min, search_range, search_step
    )
    qmin, qmax = qrange(num_bits)
    losses = np.array(
        [  # step 4: float64 mean of squared errors
            np.mean(
                (fake_quant(x, s, z, num_bits)[1].astype(np.float64) - x.astype(np.float64)) ** 2
            )
            if ok
            else np.inf
            for s, z, ok in zip(scales, zero_points, valid)
        ]
    )
    best = int(np.argmin(losses))  # the first minimum
    s, z = scales[best], int(zero_points[best])
    return {
        "max_init": max0,
        "min_init": min0,
        "ratios": ratios,
        "clips": clips,
        "scales": scales,
        "zero_points": zero_points,
        "losses": losses,
        "best": best,
        "scale": s,
        "zero_point": z,
        "clip_max": s * np.float32(qmax - z),  # step 5
        "clip_min": s * np.float32(qmin - z),
    }


def histogram_bins(counts, edges, hist_min, hist_max):
    """(lo, hi, count) of a histogram's non-empty bins, as histogram-mode IFMR sees them.

    README "How it is built": each bin's count is spread uniformly over the bin, and the
    outer bins end at the exact observed min and max rather than at their edges.
    """
    counts = np.asarray(counts)
    edges = np.asarray(edges, dtype=np.float64)
    keep = np.flatnonzero(counts)
    lo = np.maximum(edges[keep], hist_min)
    hi = np.minimum(edges[keep + 1], hist_max)
    return lo, hi, counts[keep].astype(np.float64)


def hist_sq_error(lo, hi, count, scale, zero_point, num_bits):
    """Sum over bins of count * (mean over v uniform in [lo, hi] of (y(v) - v)**2), float64.

    y(v) = k(v) * s with k(v) = clamp(rint(v / s), qmin - z, qmax - z) in real arithmetic:
    the squared error of fake quantization, integrated exactly over each bin. Between two
    code boundaries (k + 1/2) * s the code is one constant k, and the integral of
    (k * s - v)**2 over [a, b] is (b - a) * ((mid - k * s)**2 + (b - a)**2 / 12); a whole
    cell of width s inside the grid contributes s**3 / 12. A bin of zero width (all its
    values equal) contributes count * (y(lo) - lo)**2.
    """
    qmin, qmax = qrange(num_bits)
    s = float(scale)
    k_lo, k_hi = qmin - int(zero_point), qmax - int(zero_point)
    lo, hi, count = (np.asarray(v, dtype=np.float64) for v in (lo, hi, count))

    def code(v):  # used at midpoints of pieces only: never on a tie
        return np.clip(np.rint(v / s), k_lo, k_hi)

    def piece(a, b):  # integral over [a, b] inside one code
        w, mid = b - a, 0.5 * (a + b)
        d = mid - code(mid) * s
        return w * (d * d + w * w / 12.0)

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # Code boundaries (j + 1/2) * s strictly inside (lo, hi), for codes j, j + 1 in the grid.
        j0 = np.maximum(k_lo, np.floor(lo / s - 0.5) + 1)
        j1 = np.minimum(k_hi - 1, np.ceil(hi / s - 0.5) - 1)
        first = np.clip((j0 + 0.5) * s, lo, hi)
        last = np.clip((j1 + 0.5) * s, first, hi)
        # No boundary inside: one piece. Else: first partial cell, j1 - j0 whole cells,
        # last partial cell.
        integral = np.where(
            j1 < j0,
            piece(lo, hi),
            piece(lo, first) + (j1 - j0) * s**3 / 12.0 + piece(last, hi),
        )
        per_bin = np.where(hi > lo, count * integral / (hi - lo), count * (code(lo) * s - lo) ** 2)
    return float(np.sum(per_bin))


def ifmr_histogram_losses(counts, edges, hist_min, hist_max, scales, zero_points, valid, num_bits):
    """SPEC "IFMR" step 4 in histogram mode: each candidate's loss over the whole histogram
    (hist_sq_error / N), infinite for a candidate whose grid is not finite."""
    lo, hi, count = histogram_bins(counts, edges, hist_min, hist_max)
    n = float(np.sum(count))
    return np.array(
        [
            hist_sq_error(lo, hi, count, s, z, num_bits) / n if ok else np.inf
            for s, z, ok in zip(scales, zero_points, valid)
        ]
    )


# ---- SPEC "Summation order": the clip and scale gradient sums, addition by addition ----

LANES = 8  # float64 lanes of one run
PIECE = 2**14  # elements per partial sum of a channel's rows
COLUMN_GROUPS = 64  # groups of outer rows when the channel axis is the last one


def _sequential(values: np.ndarray, axis: int) -> np.ndarray:
    """0.0 + v[0] + v[1] + ..., left to right along ``axis`` (float64)."""
    zero = np.zeros_like(np.take(values, [0], axis=axis))
    return np.cumsum(np.concatenate([zero, values], axis=axis), axis=axis).take(-1, axis=axis)


def _run_sums(runs: np.ndarray) -> np.ndarray:
    """The sum of each run (the last axis): element i into lane i % 8, each lane left to
    right from 0.0, then the lanes folded ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))."""
    n = runs.shape[-1]
    padded = np.concatenate(
        [runs, np.zeros((*runs.shape[:-1], -n % LANES))], axis=-1
    )  # adding 0.0 to a sum that started at 0.0 changes nothing
    v = _sequential(padded.reshape(*runs.shape[:-1], -1, LANES), axis=-2)
    return ((v[..., 0] + v[..., 1]) + (v[..., 2] + v[..., 3])) + (
        (v[..., 4] + v[..., 5]) + (v[..., 6] + v[..., 7])
    )


def ordered_sum(terms: np.ndarray, axis: int | None) -> np.ndarray:
    """float64 ``terms`` (the shape of x) summed over the tensor (``axis`` None, a 0-d
    result) or over each channel along ``axis``, in SPEC "Summation order"."""
    terms = np.asarray(terms, dtype=np.float64)
    if axis is None:
        outer, channels, inner = 1, 1, terms.size
    else:
        axis %= terms.ndim
        outer = math.prod(terms.shape[:axis])
        channels = terms.shape[axis]
        inner = math.prod(terms.shape[axis + 1 :])
    t = terms.reshape(outer, channels, inner)
    if terms.size == 0:
        total = np.zeros(channels)
    elif inner == 1 and channels > 1:  # the channel axis is the last one
        groups = min(outer, COLUMN_GROUPS)
        bounds = [k * outer // groups for k in range(groups + 1)]
        per_group = np.stack(
            [_sequential(t[a:b, :, 0], axis=0) for a, b in zip(bounds, bounds[1:])]
        )
        total = _sequential(per_group, axis=0)
    elif inner >= PIECE:  # each block of PIECE elements of a row is one piece
        blocks = -(-inner // PIECE)
        padded = np.concatenate([t, np.zeros((outer, channels, blocks * PIECE - inner))], axis=2)
        pieces = _run_sums(padded.reshape(outer, channels, blocks, PIECE))  # (o, c, block)
        total = _sequential(pieces.transpose(1, 0, 2).reshape(channels, -1), axis=1)
    else:  # whole rows, PIECE // inner of them per piece, each row a run of its own
        rows = _run_sums(t)  # (outer, channel)
        per_piece = PIECE // inner
        pieces = [_sequential(rows[a : a + per_piece], axis=0) for a in range(0, outer, per_piece)]
        total = _sequential(np.stack(pieces), axis=0)
    return total.reshape(()) if axis is None else total


def ulq_backward_exact(g, x, clip_min, clip_max, fixed_min=False, num_bits=8, axis=None):
    """SPEC "ULQ" backward with its sums as the kernels take them (SPEC "Summation order"):
    (grad_x, grad_clip_min, grad_clip_max), all float32, to the bit.

    gd = sum(g * (rint(t) - t)), gup = sum(g where upper), glo = sum(g where lower);
    grad_clip_max = float32(gd / L + gup), grad_clip_min = float32(glo - gd / L)."""
    grad_x, g64, d, upper, lower, levels = _ulq_backward_parts(
        g, x, clip_min, clip_max, fixed_min, num_bits, axis
    )
    with np.errstate(invalid="ignore"):
        e = ordered_sum(g64 * d, axis) / levels
        grad_max = (e + ordered_sum(np.where(upper, g64, 0.0), axis)).astype(np.float32)
        grad_min = (ordered_sum(np.where(lower, g64, 0.0), axis) - e).astype(np.float32)
    if fixed_min:
        grad_min = np.zeros_like(grad_min)
    return grad_x, grad_min, grad_max


def ulq_weight_backward_exact(g, w, scale, num_bits=8, axis=None):
    """SPEC "Weight ULQ" backward with the sum taken in SPEC "Summation order":
    (grad_w, grad_scale), float32, to the bit."""
    _, qmax = qrange(num_bits)
    grad_w, terms = ulq_weight_backward_terms(g, w, scale, num_bits, axis)
    n = grad_w.size if axis is None else grad_w.size // max(1, grad_w.shape[axis])
    total = ordered_sum(terms, axis)
    grad_s = total / math.sqrt(n * qmax) if n else np.zeros_like(total)
    return grad_w, np.asarray(grad_s).astype(np.float32)
