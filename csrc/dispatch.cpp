#include "dispatch.h"

#include <atomic>
#include <cstring>

#include "kernels/registry.h"

namespace qatcore {
namespace {

const Kernels kTables[kIsaCount] = {
    {Isa::scalar, &scalar::kFakeQuant, &scalar::kReduce, &scalar::kUlq, &scalar::kIfmr},
#ifdef QATCORE_X86
    {Isa::avx2, &avx2::kFakeQuant, &avx2::kReduce, &avx2::kUlq, &avx2::kIfmr},
    {Isa::avx512, &avx512::kFakeQuant, &avx512::kReduce, &avx512::kUlq, &avx512::kIfmr},
#else
    {Isa::avx2, nullptr, nullptr, nullptr, nullptr},
    {Isa::avx512, nullptr, nullptr, nullptr, nullptr},
#endif
};

const char* const kNames[kIsaCount] = {"scalar", "avx2", "avx512"};

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
#ifdef QATCORE_X86
    // GCC's and Clang's cpu model also checks XCR0, i.e. that the OS saves the
    // wider registers, not only that CPUID lists the instructions.
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return cpu_has(Isa::avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#endif
    default:
      return false;
  }
}

// Reads CPUID once. __builtin_cpu_supports reads data that __builtin_cpu_init
// fills; libgcc runs that from a constructor whose order against this library's
// own static initializers is not specified, so it is called here explicitly.
// Never from a static initializer: best_isa() runs it on first use.
Isa detect_best() {
#ifdef QATCORE_X86
  __builtin_cpu_init();
#endif
  for (int i = kIsaCount - 1; i > 0; --i) {
    if (cpu_has(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  return Isa::scalar;
}

// Null until the first kernels() or set_isa(): a constant initializer, so no
// code runs at load time.
std::atomic<const Kernels*> g_current{nullptr};

}  // namespace

const char* isa_name(Isa isa) { return kNames[static_cast<int>(isa)]; }

bool parse_isa(const char* name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (std::strcmp(name, kNames[i]) == 0) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

// The levels nest (AVX-512 requires AVX2), so every level up to the best one is available.
bool isa_available(Isa isa) { return isa <= best_isa(); }

Isa best_isa() {
  static const Isa best = detect_best();  // thread-safe, once
  return best;
}

void set_isa(Isa isa) { g_current.store(&kTables[static_cast<int>(isa)]); }

const Kernels& kernels() {
  const Kernels* k = g_current.load();
  if (k != nullptr) return *k;
  const Kernels* best = &kTables[static_cast<int>(best_isa())];
  // A concurrent set_isa wins: only a still-null table is replaced.
  g_current.compare_exchange_strong(k, best);
  return *g_current.load();
}

}  // namespace qatcore
