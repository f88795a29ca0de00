#include "exec/threads.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace qatcore {
namespace {

int default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

std::atomic<int> g_threads{default_threads()};
std::atomic<uint64_t> g_parallel_jobs{0};

}  // namespace

int num_threads() { return g_threads.load(); }
void set_num_threads(int n) { g_threads.store(std::max(1, n)); }
uint64_t parallel_jobs() { return g_parallel_jobs.load(); }
void count_parallel_job() { g_parallel_jobs.fetch_add(1); }

}  // namespace qatcore
