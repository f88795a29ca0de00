#include "exec/openmp.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "exec/shares.h"
#include "exec/threads.h"

namespace qatcore {
namespace {

using Clock = std::chrono::steady_clock;

// Held for the whole of a job on the team, for the look-up, and across fork().
std::mutex g_run;
bool g_forked = false;  // set in a forked child

// libgomp's team does not survive fork(): the child has only the forking thread,
// while libgomp's state says its workers exist. g_run is held across the fork, so
// no job is half-way through in the child.
void atfork_prepare() { g_run.lock(); }
void atfork_parent() { g_run.unlock(); }
void atfork_child() {
  g_forked = true;
  g_run.unlock();
}
const int g_atfork_registered = pthread_atfork(atfork_prepare, atfork_parent, atfork_child);

// The OpenMP runtime that PyTorch's CPU builds load (libgomp), when it is in the
// process: its threads are PyTorch's intra-op workers, and right after one of
// PyTorch's operators they are still polling for the next parallel region. A
// kernel call run on that team takes no core from PyTorch and wakes nobody;
// qatcore's own pool would put a second set of threads on the same cores, each
// waiting for the other's to yield. Looked up, never loaded; never used in a
// forked child, where libgomp's threads are gone but its state is not (note_load
// catches a child that loads qatcore only after the fork).
struct OpenMp {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned) = nullptr;  // GOMP_parallel
  int (*thread_num)() = nullptr;                                            // omp_get_thread_num
  int (*max_threads)() = nullptr;                                           // omp_get_max_threads
};

std::atomic<bool> g_openmp_allowed{true};

// The path of a loaded libgomp: "libgomp.so.1", or a wheel's renamed copy
// ("libgomp-<hash>.so.1"); empty when none is loaded.
std::string loaded_libgomp() {
  std::string path;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const char* name = info->dlpi_name;
        const char* base = name ? std::strrchr(name, '/') : nullptr;
        base = base ? base + 1 : name;
        if (base && std::strncmp(base, "libgomp", 7) == 0) {
          *static_cast<std::string*>(out) = name;
          return 1;
        }
        return 0;
      },
      &path);
  return path;
}

// Callers hold g_run. The look-up (about 20 us) runs at most once a second until it
// succeeds, or whenever `now` is asked for.
const OpenMp* find_openmp(bool now_please = false) {
  static OpenMp found;
  static bool ready = false;
  static Clock::time_point next_look{};
  if (ready) return &found;
  const auto now = Clock::now();
  if (now < next_look && !now_please) return nullptr;
  next_look = now + std::chrono::seconds(1);
  const std::string path = loaded_libgomp();
  if (path.empty()) return nullptr;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (h == nullptr) return nullptr;
  OpenMp o;
  o.parallel = reinterpret_cast<decltype(o.parallel)>(dlsym(h, "GOMP_parallel"));
  o.thread_num = reinterpret_cast<decltype(o.thread_num)>(dlsym(h, "omp_get_thread_num"));
  o.max_threads = reinterpret_cast<decltype(o.max_threads)>(dlsym(h, "omp_get_max_threads"));
  dlclose(h);  // NOLOAD took a reference to a library that stays loaded
  if (o.parallel == nullptr || o.thread_num == nullptr || o.max_threads == nullptr) return nullptr;
  found = o;
  ready = true;
  return &found;
}

// Callers hold g_run.
const OpenMp* usable_openmp(bool look_now = false) {
  return g_openmp_allowed.load() && !g_forked ? find_openmp(look_now) : nullptr;
}

struct OpenMpJob {
  const OpenMp* omp;
  const ChunkFn* fn;
  Shares* shares;
};

void openmp_body(void* data) {
  const auto* job = static_cast<const OpenMpJob*>(data);
  job->shares->drain(job->omp->thread_num(), *job->fn);
}

// Guarded by g_run. Never freed: a daemon thread may still be in a kernel at exit.
Shares& g_openmp_shares = *new Shares;

int process_threads() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int n = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "Threads: %d", &n) == 1) break;
  }
  std::fclose(f);
  return n;
}

}  // namespace

int OpenMpExecutor::threads() const { return num_threads(); }

void OpenMpExecutor::run(int64_t n_chunks, ChunkFn f) {
  if (!try_run(n_chunks, f)) SerialExecutor().run(n_chunks, f);
}

bool OpenMpExecutor::try_run(int64_t n_chunks, ChunkFn f) {
  (void)g_atfork_registered;
  const int threads = num_threads();
  std::unique_lock<std::mutex> lk(g_run, std::defer_lock);
  if (n_chunks > 1 && threads > 1 && lk.try_lock()) {
    const OpenMp* omp = usable_openmp();
    if (omp == nullptr) return false;
    const int team =
        static_cast<int>(std::min<int64_t>({threads, omp->max_threads(), n_chunks}));
    if (team > 1) {
      count_parallel_job();
      g_openmp_shares.reset(n_chunks, team);
      OpenMpJob job{omp, &f, &g_openmp_shares};
      omp->parallel(openmp_body, &job, static_cast<unsigned>(team), 0);
      return true;
    }
  }
  SerialExecutor().run(n_chunks, f);
  return true;
}

OpenMpExecutor& openmp_team() {
  static OpenMpExecutor team;
  return team;
}

void note_load() {
  // A process that forked after its libgomp had started a team and then loads qatcore
  // cannot be told from one that merely has libgomp loaded, except that the child has
  // one thread. Such a process keeps to qatcore's pool, which is always safe.
  std::lock_guard<std::mutex> lk(g_run);
  if (!loaded_libgomp().empty() && process_threads() == 1) g_forked = true;
}

bool openmp_threads() {
  std::lock_guard<std::mutex> lk(g_run);
  return usable_openmp(true) != nullptr;
}
bool openmp_allowed() { return g_openmp_allowed.load(); }
void set_openmp_allowed(bool allowed) { g_openmp_allowed.store(allowed); }

}  // namespace qatcore
