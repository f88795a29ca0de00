// Shared by the operations (ops/*.cpp): how a tensor is seen around its
// quantization axis, and how work over it is cut into chunks for an executor.
// No front end here.
#pragma once
#include <algorithm>
#include <cstdint>

#include "exec/executor.h"

namespace qatcore {

// A C-contiguous tensor seen as (outer, channels, inner) around the quantization
// axis. Per tensor is {1, 1, n}.
struct Layout {
  int64_t outer;
  int64_t channels;
  int64_t inner;
  int64_t size() const { return outer * channels * inner; }
};

// Visits the flat range [a, b) of a (outer, channels, inner) tensor as maximal
// runs that the leaf kernels take: row(offset, length, channel) for runs inside
// one channel's row of `inner` elements, or, when inner == 1 (the channel axis
// is the last one), cols(offset, length, first_channel) for runs along the
// channel axis.
template <class Row, class Cols>
void for_runs(int64_t a, int64_t b, const Layout& l, Row&& row, Cols&& cols) {
  if (l.inner == 1 && l.channels > 1) {
    while (a < b) {
      const int64_t c = a % l.channels;
      const int64_t end = std::min(b, a - c + l.channels);
      cols(a, end - a, c);
      a = end;
    }
  } else {
    while (a < b) {
      const int64_t r = a / l.inner;
      const int64_t end = std::min(b, (r + 1) * l.inner);
      row(a, end - a, r % l.channels);
      a = end;
    }
  }
}

// Each family of operations sizes its chunks from its own measured grain (below);
// a positive override replaces all of them. Tests set a tiny one so that small
// inputs are split across threads too. 0: no override.
int64_t grain_override();
void set_grain_override(int64_t n);  // n >= 0

// Families of operations, by what one element costs them.
enum class Family {
  elementwise,   // fake quantization, quantize, dequantize, the ULQ forwards
  ulq_backward,  // the fused ULQ and weight-ULQ backwards
  arq,           // ARQ's fused rows: min/max, then fake quantization, per channel
  reduce,        // min/max and histogram passes
  ifmr,          // the IFMR candidate search (per candidate-bin pair)
};

// Elements (or candidate-bin pairs) per chunk: the smallest chunk for which a second
// thread pays for its hand-off, so that a call of fewer than twice this many stays
// on one thread. Measured on a 2-core AVX-512 machine with `python bench/bench.py
// --only threads` (its "serial below" rows), rounded to a power of two.
struct FamilyGrain {
  Family family;
  const char* name;
  int64_t grain;
};
inline constexpr FamilyGrain kFamilyGrains[] = {
    {Family::elementwise, "elementwise", int64_t{1} << 16},
    {Family::ulq_backward, "ulq_backward", int64_t{1} << 15},
    {Family::arq, "arq", int64_t{1} << 16},
    {Family::reduce, "reduce", int64_t{1} << 17},
    {Family::ifmr, "ifmr", int64_t{1} << 10},
};

// The family's grain, or the tests' override.
inline int64_t grain(Family f) {
  const int64_t forced = grain_override();
  if (forced > 0) return forced;
  for (const FamilyGrain& g : kFamilyGrains) {
    if (g.family == f) return g.grain;
  }
  return kFamilyGrains[0].grain;
}

// Items per chunk for n items of at least `min` each: n / min chunks (at least one)
// of nearly equal size. The split depends on n and min alone, never on the threads.
inline int64_t even_chunk(int64_t n, int64_t min) {
  const int64_t chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, min));
  return std::max<int64_t>(1, (n + chunks - 1) / chunks);
}

// Runs an elementwise per-channel map over the whole tensor in chunks of the family's grain.
template <class Row, class Cols>
void elementwise(Executor& ex, const Layout& l, Row&& row, Cols&& cols) {
  const int64_t n = l.size();
  parallel_ranges(ex, n, even_chunk(n, grain(Family::elementwise)),
                  [&](int64_t a, int64_t b) { for_runs(a, b, l, row, cols); });
}

// One contiguous part per executor thread (of at least the reduce grain), for reductions whose
// result cannot depend on the split: exact min/max, integer counts.
struct Parts {
  int64_t count;  // ranges parallel_ranges(n, size, ...) will produce (1 when n == 0)
  int64_t size;
};

// At most max_parts parts (>= 1): callers that keep per-part state bound it here.
inline Parts per_thread_parts(const Executor& ex, int64_t n, int64_t max_parts = INT64_MAX) {
  const int64_t wanted = std::max<int64_t>(
      1, std::min({int64_t{ex.threads()}, n / grain(Family::reduce), max_parts}));
  const int64_t size = std::max<int64_t>(1, (n + wanted - 1) / wanted);
  return {n == 0 ? 1 : (n + size - 1) / size, size};
}

}  // namespace qatcore
