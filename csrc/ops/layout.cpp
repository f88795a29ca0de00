#include "ops/layout.h"

#include <atomic>

namespace qatcore {
namespace {

std::atomic<int64_t> g_grain_override{0};

}  // namespace

int64_t grain_override() { return g_grain_override.load(); }
void set_grain_override(int64_t n) { g_grain_override.store(std::max<int64_t>(0, n)); }

}  // namespace qatcore
