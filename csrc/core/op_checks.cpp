#include "core/op_checks.h"

#include <cmath>
#include <string>
#include <utility>

#include "core/checks.h"

namespace qatcore {
namespace {

// Codes fit int8 up to 8 bits and int16 above.
DType code_dtype(int num_bits) { return num_bits <= 8 ? DType::int8 : DType::int16; }

// clip_min/clip_max: finite float32 arrays of `channels` entries, 1-d, or 0-d for one
// channel (a tensor's clips as a framework holds them).
Error check_clips(const ArrayView& lo, const ArrayView& hi, int64_t channels) {
  if (Error e = check_array(lo, DType::float32, "clip_min", false)) return e;
  if (Error e = check_array(hi, DType::float32, "clip_max", false)) return e;
  for (const auto& [arr, name] : {std::pair{&lo, "clip_min"}, {&hi, "clip_max"}}) {
    const bool scalar = arr->ndim == 0 && channels == 1;
    if (!scalar) {
      if (Error e = check_per_channel(*arr, name, channels)) return e;
    }
    const float* v = arr->in<float>();
    for (int64_t i = 0; i < channels; ++i) {
      if (!std::isfinite(v[i])) {
        return Error::value(std::string(name) + ": expected finite values, got " +
                            float_repr(static_cast<double>(v[i])) + " at index " +
                            std::to_string(i));
      }
    }
  }
  return {};
}

// Weight ULQ's scale: one finite positive float32 per channel with a finite reciprocal.
Error check_weight_scale(const ArrayView& scale, int64_t channels) {
  if (Error e = check_array(scale, DType::float32, "scale", false)) return e;
  if (Error e = check_per_channel(scale, "scale", channels)) return e;
  return check_scale_values(scale.in<float>(), channels);
}

// Candidates: one scale and zero point each, validated like quantization params.
Error check_candidates(const ArrayView& scale, const ArrayView& zero_point, int num_bits) {
  if (Error e = check_array(scale, DType::float32, "scale", false)) return e;
  if (scale.ndim != 1) {
    return Error::value("scale: expected a 1-d array of candidates, got " + describe(scale));
  }
  return check_params(scale, zero_point, scale.shape[0], num_bits);
}

}  // namespace

Error check_quant_params(const ArrayView& scale, const ArrayView& zp, int num_bits,
                         std::optional<int64_t> axis) {
  QRange r;
  if (Error e = check_range(num_bits, &r)) return e;
  if (Error e = check_array(scale, DType::float32, "scale", false)) return e;
  const int want = axis ? 1 : 0;
  if (scale.ndim != want) {
    const std::string where =
        axis ? "per channel (axis=" + std::to_string(*axis) + ")" : "per tensor (axis=None)";
    return Error::value("scale: expected " + std::to_string(want) + " dimensions " + where +
                        ", got shape " + shape_str(scale));
  }
  const bool narrow = zp.is_array() && zp.dtype == DType::int32;
  if (!narrow && !(zp.is_array() && zp.dtype == DType::int64)) {
    return Error::type("zero_point: expected an int32 or int64 array, got " + describe(zp));
  }
  if (Error e = check_array(zp, zp.dtype, "zero_point", false)) return e;
  if (Error e = check_same_shape(scale, "scale", zp, "zero_point")) return e;
  if (Error e = check_scale_values(scale.in<float>(), scale.size())) return e;
  return narrow ? check_zero_point_values(zp.in<int32_t>(), zp.size(), num_bits)
                : check_zero_point_values(zp.in<int64_t>(), zp.size(), num_bits);
}

Error check_fake_quantize(const ArrayView& x, const ArrayView& out, const ArrayView& scale,
                          const ArrayView& zp, std::optional<int64_t> axis, int num_bits,
                          Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_in_out(x, DType::float32, "x", out, DType::float32)) return e;
  if (Error e = check_layout(x.shape, x.ndim, axis, "x", &c->layout)) return e;
  return check_params(scale, zp, c->layout.channels, num_bits);
}

Error check_quantize(const ArrayView& x, const ArrayView& out, const ArrayView& scale,
                     const ArrayView& zp, std::optional<int64_t> axis, int num_bits, Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_array(x, DType::float32, "x", false)) return e;
  if (Error e = check_layout(x.shape, x.ndim, axis, "x", &c->layout)) return e;
  if (Error e = check_params(scale, zp, c->layout.channels, num_bits)) return e;
  return check_in_out(x, DType::float32, "x", out, code_dtype(num_bits));
}

Error check_dequantize(const ArrayView& q, const ArrayView& out, const ArrayView& scale,
                       const ArrayView& zp, std::optional<int64_t> axis, int num_bits,
                       Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_in_out(q, code_dtype(num_bits), "q", out, DType::float32)) return e;
  if (Error e = check_layout(q.shape, q.ndim, axis, "q", &c->layout)) return e;
  return check_params(scale, zp, c->layout.channels, num_bits);
}

Error check_arq(const ArrayView& w, const ArrayView* out, std::optional<int64_t> axis,
                int num_bits, Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_array(w, DType::float32, "w", false)) return e;
  if (Error e = check_layout(w.shape, w.ndim, axis, "w", &c->layout)) return e;
  if (out == nullptr) return {};
  if (Error e = check_array(*out, DType::float32, "out", true)) return e;
  if (Error e = check_same_shape(w, "w", *out, "out")) return e;
  return check_no_partial_overlap(w, *out, "w", "out");
}

Error check_ulq_params(const ArrayView& clip_min, const ArrayView& clip_max, int num_bits,
                       Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_array(clip_min, DType::float32, "clip_min", false)) return e;
  if (clip_min.ndim > 1) {
    return Error::value("clip_min: expected a 1-d array (one entry per channel), got " +
                        describe(clip_min));
  }
  c->layout = {1, clip_min.ndim == 0 ? 1 : clip_min.shape[0], 1};
  return check_clips(clip_min, clip_max, c->layout.channels);
}

Error check_ulq_forward(const ArrayView& x, const ArrayView& out, const ArrayView& clip_min,
                        const ArrayView& clip_max, std::optional<int64_t> axis, int num_bits,
                        Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_in_out(x, DType::float32, "x", out, DType::float32)) return e;
  if (Error e = check_layout(x.shape, x.ndim, axis, "x", &c->layout)) return e;
  return check_clips(clip_min, clip_max, c->layout.channels);
}

Error check_ulq_backward(const ArrayView& g, const ArrayView& x, const ArrayView& out,
                         const ArrayView& clip_min, const ArrayView& clip_max,
                         std::optional<int64_t> axis, int num_bits, Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_backward(g, x, "x", out)) return e;
  if (Error e = check_layout(x.shape, x.ndim, axis, "x", &c->layout)) return e;
  return check_clips(clip_min, clip_max, c->layout.channels);
}

Error check_ulq_weight_forward(const ArrayView& w, const ArrayView& out, const ArrayView& scale,
                               std::optional<int64_t> axis, int num_bits, Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_in_out(w, DType::float32, "w", out, DType::float32)) return e;
  if (Error e = check_layout(w.shape, w.ndim, axis, "w", &c->layout)) return e;
  return check_weight_scale(scale, c->layout.channels);
}

Error check_ulq_weight_backward(const ArrayView& g, const ArrayView& w, const ArrayView& out,
                                const ArrayView& scale, std::optional<int64_t> axis, int num_bits,
                                Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_backward(g, w, "w", out)) return e;
  if (Error e = check_layout(w.shape, w.ndim, axis, "w", &c->layout)) return e;
  return check_weight_scale(scale, c->layout.channels);
}

Error check_minmax(const ArrayView& x) { return check_array(x, DType::float32, "x", false); }

Error check_histogram_add(const ArrayView& x, const ArrayView& counts, double inv_width,
                          double offset) {
  if (Error e = check_array(x, DType::float32, "x", false)) return e;
  if (Error e = check_array(counts, DType::int64, "counts", true)) return e;
  if (counts.ndim != 1 || counts.shape[0] < 1 || counts.shape[0] > (int64_t{1} << 30)) {
    return Error::value("counts: expected a 1-d array of 1 to 2**30 bins, got " +
                        describe(counts));
  }
  if (!(std::isfinite(inv_width) && inv_width > 0.0 && std::isfinite(offset))) {
    return Error::value(
        "inv_width, offset: expected a finite positive width and finite offset");
  }
  return {};
}

Error check_data_sq_errors(const ArrayView& x, const ArrayView& scale, const ArrayView& zp,
                           int num_bits, Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_array(x, DType::float32, "x", false)) return e;
  return check_candidates(scale, zp, num_bits);
}

Error check_hist_sq_errors(const ArrayView& lo, const ArrayView& hi, const ArrayView& count,
                           const ArrayView& scale, const ArrayView& zp, int num_bits,
                           Checked* c) {
  if (Error e = check_range(num_bits, &c->range)) return e;
  if (Error e = check_array(lo, DType::float64, "lo", false)) return e;
  if (Error e = check_array(hi, DType::float64, "hi", false)) return e;
  if (Error e = check_array(count, DType::float64, "count", false)) return e;
  if (lo.ndim != 1) return Error::value("lo: expected a 1-d array, got " + describe(lo));
  if (Error e = check_same_shape(lo, "lo", hi, "hi")) return e;
  if (Error e = check_same_shape(lo, "lo", count, "count")) return e;
  return check_candidates(scale, zp, num_bits);
}

Error quantize_result(bool ok) {
  if (ok) return {};
  return Error::value("x: expected values that are not NaN (NaN has no integer code)");
}

Error arq_result(int64_t bad, const ArrayView& w) {
  if (bad < 0) return {};
  // Name the element as an index tuple, which is what a user can look up.
  std::string where;
  int64_t rest = bad;
  for (int d = w.ndim; d-- > 0;) {
    where = std::to_string(rest % w.shape[d]) + (where.empty() ? "" : ", ") + where;
    rest /= w.shape[d];
  }
  const float v = w.in<float>()[bad];
  return Error::value("w: expected finite values (ARQ chooses scales from the data), got " +
                      float_repr(static_cast<double>(v)) + " at index (" + where + ")");
}

Error ulq_result(int64_t bad, const ArrayView& clip_min, const ArrayView& clip_max) {
  if (bad < 0) return {};
  return Error::value("clip_max: expected clip_max - clip_min to be finite in float32, got " +
                      float_repr(static_cast<double>(clip_max.in<float>()[bad])) + " - " +
                      float_repr(static_cast<double>(clip_min.in<float>()[bad])) + " at index " +
                      std::to_string(bad));
}

Error check_isa(const char* name, Isa* isa) {
  if (!parse_isa(name, isa)) {
    std::string names;
    for (int i = 0; i < kIsaCount; ++i) {
      names += std::string(i > 0 ? ", " : "") + "'" + isa_name(static_cast<Isa>(i)) + "'";
    }
    return Error::value("isa: expected one of " + names + ", got '" + name + "'");
  }
  if (!isa_available(*isa)) {
    return Error::value("isa: '" + std::string(name) + "' is not available on this CPU (best: '" +
                        isa_name(best_isa()) + "')");
  }
  return {};
}

Error check_num_threads(int n) {
  if (n >= 1) return {};
  return Error::value("n: expected an integer >= 1, got " + std::to_string(n));
}

Error check_grain(int64_t n) {
  if (n >= 0) return {};
  return Error::value("n: expected an integer >= 0, got " + std::to_string(n));
}

}  // namespace qatcore
