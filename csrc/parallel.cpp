#include "parallel.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QATCORE_CPU_RELAX() _mm_pause()
#else
#define QATCORE_CPU_RELAX() std::this_thread::yield()
#endif

namespace qatcore {
namespace {

using Clock = std::chrono::steady_clock;

// Handing a job to a worker that is polling costs about 0.3 us; waking one that
// sleeps on the condition variable costs the caller a futex system call and the
// worker the scheduler's wake-up, about 7 and 15 us on the 2-core VM of
// bench/bench.py. So a worker polls, for at most kSpin, only while jobs come
// back to back (the last call came within kSpin of the one before): a loop of
// kernel calls keeps it polling, while in a training step, where PyTorch's
// operators run for far longer between two kernel calls, it sleeps at once and
// leaves the core to PyTorch's threads. (Polling there cost a ResNet-20 step
// measurably more than sleeping; see the README, "Threads".)
constexpr auto kSpin = std::chrono::microseconds(50);

// Sleeping workers are woken only for a job of at least this many chunks (each
// family's grain makes a chunk a few microseconds of work), or for one that comes
// within kSpin of the previous call: a short job now and then is over before a
// woken worker could take a share.
constexpr int64_t kWakeChunks = 4;

// Chunks [0, n) in contiguous shares, one per participant. Each participant takes
// its own share front to back, so that repeated calls on the same data find their
// share in the same core's cache; whoever is done takes what is left of the
// others' shares, so a late or busy participant never holds a call up.
class Shares {
 public:
  void reset(int64_t n_chunks, int parts) {
    if (parts > capacity_) {
      shares_.reset(new Share[static_cast<size_t>(parts)]);
      capacity_ = parts;
    }
    parts_ = parts;
    for (int p = 0; p < parts; ++p) {
      shares_[p].next.store(n_chunks * p / parts, std::memory_order_relaxed);
      shares_[p].end = n_chunks * (p + 1) / parts;
    }
  }

  // Participant p's own share, then the rest of everyone else's.
  void drain(int p, const ChunkFn& f) {
    for (int k = 0; k < parts_; ++k) {
      Share& s = shares_[(p + k) % parts_];
      for (int64_t i = s.next.fetch_add(1); i < s.end; i = s.next.fetch_add(1)) f(i);
    }
  }

 private:
  struct alignas(64) Share {  // one cache line each: owners do not contend
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  std::unique_ptr<Share[]> shares_;
  int capacity_ = 0;
  int parts_ = 0;
};

class Pool {
 public:
  explicit Pool(int workers) {
    threads_.reserve(static_cast<size_t>(workers));
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_.store(true);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  int size() const { return static_cast<int>(threads_.size()); }

  // False when every worker sleeps, the job is too short to wake them for, and the
  // last job came long ago (calls that come back to back are worth one wake-up:
  // the workers then keep polling).
  bool worth_it(int64_t n_chunks) {
    const auto now = Clock::now();
    const bool recent = now - last_call_ < kSpin;
    last_call_ = now;
    back_to_back_.store(recent, std::memory_order_relaxed);
    return n_chunks >= kWakeChunks || recent || sleepers_.load() < size();
  }

  // One job at a time: the caller holds g_run. The caller works too; `helpers`
  // workers may join it, each with a share of the chunks (Shares).
  //
  // A worker joins by counting itself in running_ first and then taking one of the
  // open_ slots; the caller, done with its share, closes the slots and waits until
  // running_ is 0. So a worker that is late (even for an earlier job) either holds a
  // slot of this job, which keeps the job alive until it is done, or finds none and
  // touches nothing of it.
  void run(ChunkFn* fn, int64_t n_chunks, int helpers) {
    fn_ = fn;
    shares_.reset(n_chunks, helpers + 1);
    open_.store(helpers, std::memory_order_release);
    generation_.fetch_add(1);  // seq_cst: ordered before the read of sleepers_
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(m_);  // a worker between its check and its wait
      wake_.notify_all();
    }
    shares_.drain(0, *fn_);
    open_.store(0);
    for (const auto start = Clock::now(); running_.load() != 0;) {
      if (Clock::now() - start < kSpin) {
        QATCORE_CPU_RELAX();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  // Takes one open slot, if any is left: the participant number (1..helpers) or 0.
  // Sequentially consistent, as running_ is: the worker's running_ increment and its
  // read of open_ must not pass the caller's open_.store(0) and read of running_.
  int claim() {
    int open = open_.load();
    while (open > 0) {
      if (open_.compare_exchange_weak(open, open - 1)) return open;
    }
    return 0;
  }

  // Returns once generation_ differs from `seen`: polling for up to `spin`, then asleep.
  uint64_t wait_for_job(uint64_t seen, Clock::duration spin) {
    const auto start = Clock::now();
    while (Clock::now() - start < spin) {
      for (int i = 0; i < 64; ++i) {
        const uint64_t g = generation_.load(std::memory_order_acquire);
        if (g != seen) return g;
        QATCORE_CPU_RELAX();
      }
    }
    std::unique_lock<std::mutex> lk(m_);
    sleepers_.fetch_add(1);  // seq_cst: ordered before the check of generation_
    wake_.wait(lk, [&] { return generation_.load() != seen; });
    sleepers_.fetch_sub(1);
    return generation_.load();
  }

  void work() {
    uint64_t seen = 0;
    for (;;) {
      // Poll only while the caller's calls come back to back (its own clock: a
      // worker's wake-up can take longer than kSpin on a virtual machine).
      const bool poll = back_to_back_.load(std::memory_order_relaxed);
      seen = wait_for_job(seen, poll ? Clock::duration(kSpin) : Clock::duration(0));
      if (stop_.load()) return;
      running_.fetch_add(1);
      if (const int p = claim()) shares_.drain(p, *fn_);
      running_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::mutex m_;
  std::condition_variable wake_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> open_{0};
  std::atomic<int> running_{0};
  ChunkFn* fn_ = nullptr;
  Shares shares_;
  Clock::time_point last_call_{};  // the caller's, under g_run
  std::atomic<bool> back_to_back_{false};
};

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
std::atomic<int64_t> g_grain_override{0};
// Held for the whole of a parallel job, and across fork().
std::mutex g_run;
Pool* g_pool = nullptr;
bool g_forked = false;  // set in a forked child

// After fork() the child has only the forking thread: the pool's workers are
// gone and its state is meaningless, so the child forgets it (leaking it on
// purpose) and builds a new one on first use. g_run is held across the fork,
// so no job is half-way through in the child.
void atfork_prepare() { g_run.lock(); }
void atfork_parent() { g_run.unlock(); }
void atfork_child() {
  g_pool = nullptr;
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
std::atomic<uint64_t> g_parallel_jobs{0};

}  // namespace

int num_threads() { return g_threads.load(); }
void set_num_threads(int n) { g_threads.store(std::max(1, n)); }
int64_t grain_override() { return g_grain_override.load(); }
void set_grain_override(int64_t n) { g_grain_override.store(std::max<int64_t>(0, n)); }

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
uint64_t parallel_jobs() { return g_parallel_jobs.load(); }
bool openmp_allowed() { return g_openmp_allowed.load(); }
void set_openmp_allowed(bool allowed) { g_openmp_allowed.store(allowed); }

void parallel_chunks(int64_t n_chunks, ChunkFn f) {
  (void)g_atfork_registered;
  const int threads = num_threads();
  std::unique_lock<std::mutex> lk(g_run, std::defer_lock);
  if (n_chunks > 1 && threads > 1 && lk.try_lock()) {
    if (const OpenMp* omp = usable_openmp()) {
      const int team = static_cast<int>(
          std::min<int64_t>({threads, omp->max_threads(), n_chunks}));
      if (team > 1) {
        g_parallel_jobs.fetch_add(1);
        g_openmp_shares.reset(n_chunks, team);
        OpenMpJob job{omp, &f, &g_openmp_shares};
        omp->parallel(openmp_body, &job, static_cast<unsigned>(team), 0);
        return;
      }
    } else {
      if (g_pool == nullptr || g_pool->size() != threads - 1) {
        delete g_pool;
        g_pool = new Pool(threads - 1);
      }
      if (g_pool->worth_it(n_chunks)) {
        const int helpers = static_cast<int>(std::min<int64_t>(threads - 1, n_chunks - 1));
        g_parallel_jobs.fetch_add(1);
        g_pool->run(&f, n_chunks, helpers);
        return;
      }
    }
  }
  for (int64_t i = 0; i < n_chunks; ++i) f(i);
}

}  // namespace qatcore
