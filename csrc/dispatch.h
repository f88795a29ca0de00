// Instruction-set dispatch: which build of the leaf kernels runs.
#pragma once
#include "kernels/fake_quant.h"
#include "kernels/ifmr.h"
#include "kernels/reduce.h"
#include "kernels/ulq.h"

namespace qatcore {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };
constexpr int kIsaCount = 3;

struct Kernels {
  Isa isa;
  const FakeQuantKernels* fq;
  const ReduceKernels* reduce;
  const UlqKernels* ulq;
  const IfmrKernels* ifmr;
};

const char* isa_name(Isa isa);
// Returns false for an unknown name.
bool parse_isa(const char* name, Isa* out);
// Compiled in and supported by this CPU and OS (CPUID + XGETBV).
bool isa_available(Isa isa);
// Detected once, on first use, after __builtin_cpu_init().
Isa best_isa();
// Precondition: isa_available(isa). Kernels already running keep the table they
// loaded; the next call picks up the new one.
void set_isa(Isa isa);
// The current table. An operation loads it once and uses it throughout, so a
// concurrent set_isa never mixes two instruction sets inside one result. The
// first call (the module's init makes it) picks best_isa(): nothing is chosen
// in a static initializer.
const Kernels& kernels();

}  // namespace qatcore
