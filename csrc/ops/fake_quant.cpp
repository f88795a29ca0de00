#include "ops/fake_quant.h"

#include <atomic>
#include <vector>

#include "dispatch.h"

namespace qatcore {
namespace {

// Per-channel constants in both forms the leaf kernels take.
struct ChannelConsts {
  std::vector<QuantConst> rows;
  std::vector<float> scale, inv, lo, hi;
  std::vector<int32_t> zero_point;

  ChannelConsts(const float* s, const int32_t* z, int64_t channels, QRange r) {
    const auto n = static_cast<size_t>(channels);
    rows.resize(n);
    scale.resize(n);
    inv.resize(n);
    lo.resize(n);
    hi.resize(n);
    zero_point.resize(n);
    for (size_t c = 0; c < n; ++c) {
      const QuantConst q = quant_const(s[c], z[c], r);
      rows[c] = q;
      scale[c] = q.scale;
      inv[c] = q.inv_scale;
      lo[c] = q.lo;
      hi[c] = q.hi;
      zero_point[c] = q.zero_point;
    }
  }

  QuantConstArrays from(int64_t c) const {
    const auto i = static_cast<size_t>(c);
    return {&scale[i], &inv[i], &lo[i], &hi[i], &zero_point[i]};
  }
};

template <class T, class RowK, class ColsK>
bool quantize_impl(Executor& ex, const float* x, T* q, const Layout& l, const float* scale,
                   const int32_t* zero_point, QRange r, RowK row_k, ColsK cols_k) {
  const ChannelConsts cc(scale, zero_point, l.channels, r);
  std::atomic<int> nan{0};
  elementwise(
      ex, l,
      [&](int64_t off, int64_t n, int64_t c) {
        if (row_k(x + off, q + off, n, cc.rows[static_cast<size_t>(c)])) nan.store(1);
      },
      [&](int64_t off, int64_t n, int64_t c) {
        if (cols_k(x + off, q + off, n, cc.from(c))) nan.store(1);
      });
  return nan.load() == 0;
}

template <class T, class RowK, class ColsK>
void dequantize_impl(Executor& ex, const T* q, float* y, const Layout& l, const float* scale,
                     const int32_t* zero_point, QRange r, RowK row_k, ColsK cols_k) {
  const ChannelConsts cc(scale, zero_point, l.channels, r);
  elementwise(
      ex, l,
      [&](int64_t off, int64_t n, int64_t c) {
        row_k(q + off, y + off, n, cc.rows[static_cast<size_t>(c)]);
      },
      [&](int64_t off, int64_t n, int64_t c) { cols_k(q + off, y + off, n, cc.from(c)); });
}

}  // namespace

void fake_quantize(Executor& ex, const float* x, float* y, const Layout& l, const float* scale,
                   const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  const ChannelConsts cc(scale, zero_point, l.channels, r);
  elementwise(
      ex, l,
      [&](int64_t off, int64_t n, int64_t c) {
        k.fq_row(x + off, y + off, n, cc.rows[static_cast<size_t>(c)]);
      },
      [&](int64_t off, int64_t n, int64_t c) { k.fq_cols(x + off, y + off, n, cc.from(c)); });
}

bool quantize(Executor& ex, const float* x, int8_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  return quantize_impl(ex, x, q, l, scale, zero_point, r, k.quant_row_i8, k.quant_cols_i8);
}

bool quantize(Executor& ex, const float* x, int16_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  return quantize_impl(ex, x, q, l, scale, zero_point, r, k.quant_row_i16, k.quant_cols_i16);
}

void dequantize(Executor& ex, const int8_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  dequantize_impl(ex, q, y, l, scale, zero_point, r, k.dequant_row_i8, k.dequant_cols_i8);
}

void dequantize(Executor& ex, const int16_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  dequantize_impl(ex, q, y, l, scale, zero_point, r, k.dequant_row_i16, k.dequant_cols_i16);
}

}  // namespace qatcore
