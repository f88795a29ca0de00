// The whole argument check of each operation in csrc/ops/, in the order its
// messages have priority, and the errors that operations report after running.
// A front end fills ArrayViews, calls check_<op>, raises a non-empty Error as its
// own exception, runs the operation on its executor and passes what the
// operation returned to <op>_result. Nothing here touches a front end.
#pragma once
#include <cstdint>
#include <optional>

#include "core/array.h"
#include "core/error.h"
#include "dispatch.h"
#include "ops/layout.h"
#include "ops/qrange.h"

namespace qatcore {

// What a successful check establishes.
struct Checked {
  QRange range{};
  Layout layout{};
};

// What quantization parameters hold: scale (float32) and zero point (int32 or
// int64) of shape () per tensor or (C,) per channel, with valid values.
Error check_quant_params(const ArrayView& scale, const ArrayView& zero_point, int num_bits,
                         std::optional<int64_t> axis);

Error check_fake_quantize(const ArrayView& x, const ArrayView& out, const ArrayView& scale,
                          const ArrayView& zero_point, std::optional<int64_t> axis, int num_bits,
                          Checked* c);
// out: int8 codes up to 8 bits, int16 above.
Error check_quantize(const ArrayView& x, const ArrayView& out, const ArrayView& scale,
                     const ArrayView& zero_point, std::optional<int64_t> axis, int num_bits,
                     Checked* c);
Error check_dequantize(const ArrayView& q, const ArrayView& out, const ArrayView& scale,
                       const ArrayView& zero_point, std::optional<int64_t> axis, int num_bits,
                       Checked* c);
// out may be null (scales only).
Error check_arq(const ArrayView& w, const ArrayView* out, std::optional<int64_t> axis,
                int num_bits, Checked* c);
// clip_min and clip_max: one finite float32 per channel, 1-d or 0-d for one
// channel; c->layout is {1, channels, 1}.
Error check_ulq_params(const ArrayView& clip_min, const ArrayView& clip_max, int num_bits,
                       Checked* c);
Error check_ulq_forward(const ArrayView& x, const ArrayView& out, const ArrayView& clip_min,
                        const ArrayView& clip_max, std::optional<int64_t> axis, int num_bits,
                        Checked* c);
Error check_ulq_backward(const ArrayView& grad_output, const ArrayView& x, const ArrayView& out,
                         const ArrayView& clip_min, const ArrayView& clip_max,
                         std::optional<int64_t> axis, int num_bits, Checked* c);
Error check_ulq_weight_forward(const ArrayView& w, const ArrayView& out, const ArrayView& scale,
                               std::optional<int64_t> axis, int num_bits, Checked* c);
Error check_ulq_weight_backward(const ArrayView& grad_output, const ArrayView& w,
                                const ArrayView& out, const ArrayView& scale,
                                std::optional<int64_t> axis, int num_bits, Checked* c);
Error check_minmax(const ArrayView& x);
Error check_histogram_add(const ArrayView& x, const ArrayView& counts, double inv_width,
                          double offset);
// scale/zero_point: one candidate each.
Error check_data_sq_errors(const ArrayView& x, const ArrayView& scale,
                           const ArrayView& zero_point, int num_bits, Checked* c);
Error check_hist_sq_errors(const ArrayView& lo, const ArrayView& hi, const ArrayView& count,
                           const ArrayView& scale, const ArrayView& zero_point, int num_bits,
                           Checked* c);

// What the operations return, as errors (empty when they succeeded).
Error quantize_result(bool ok);
// arq's first non-finite element, named as an index tuple of w.
Error arq_result(int64_t bad, const ArrayView& w);
// The ULQ operations' first channel whose clip range overflows float32.
Error ulq_result(int64_t bad, const ArrayView& clip_min, const ArrayView& clip_max);

// Settings.
Error check_isa(const char* name, Isa* isa);  // known and available on this CPU
Error check_num_threads(int n);               // >= 1
Error check_grain(int64_t n);                 // >= 0

}  // namespace qatcore
