// Shared by the per-ISA kernel sources only (each includes it inside its own
// anonymous namespace, so nothing here can be merged across instruction sets).
//
// Rules for kernel sources, because each is compiled several times with
// different -m flags into one binary: no standard-library templates or other
// inline functions with external linkage (the linker would keep one copy,
// possibly the AVX-512 one, for every caller); everything lives in an anonymous
// namespace except the exported table.
#pragma once

#define QATCORE_PRAGMA(x) _Pragma(#x)
#define QATCORE_SIMD QATCORE_PRAGMA(omp simd)
#define QATCORE_SIMD_REDUCE(...) QATCORE_PRAGMA(omp simd reduction(__VA_ARGS__))

// 1.5 * 2^23. For |v| <= 2^22, v + kRoundMagic lands where the float spacing is
// exactly 1, so the addition rounds v half-to-even (the default rounding mode)
// and the subtraction is exact. Unlike rintf it vectorises at every level (SSE2
// has no round instruction) and yields +0, never -0, for values that round to
// zero: the same as the SPEC's float32(q - z) of an integer code.
constexpr float kRoundMagic = 12582912.0f;

// Callers clamp first, so |v| <= 2^16 here; NaN passes through.
inline float rint_small(float v) { return (v + kRoundMagic) - kRoundMagic; }

// Comparisons with NaN are false, so a NaN v comes out unchanged.
inline float clamp_nan(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}
