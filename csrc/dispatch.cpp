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

Isa detect_best() {
  for (int i = kIsaCount - 1; i > 0; --i) {
    if (cpu_has(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  return Isa::scalar;
}

std::atomic<const Kernels*> g_current{&kTables[static_cast<int>(detect_best())]};

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

bool isa_available(Isa isa) { return cpu_has(isa); }

Isa best_isa() { return detect_best(); }

void set_isa(Isa isa) { g_current.store(&kTables[static_cast<int>(isa)]); }

const Kernels& kernels() { return *g_current.load(); }

}  // namespace qatcore
