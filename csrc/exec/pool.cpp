#include "exec/pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "exec/shares.h"
#include "exec/threads.h"

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

// Held for the whole of a job on the pool, and across fork().
std::mutex g_run;
Pool* g_pool = nullptr;

// After fork() the child has only the forking thread: the pool's workers are
// gone and its state is meaningless, so the child forgets it (leaking it on
// purpose) and builds a new one on first use. g_run is held across the fork,
// so no job is half-way through in the child.
void atfork_prepare() { g_run.lock(); }
void atfork_parent() { g_run.unlock(); }
void atfork_child() {
  g_pool = nullptr;
  g_run.unlock();
}
const int g_atfork_registered = pthread_atfork(atfork_prepare, atfork_parent, atfork_child);

}  // namespace

int PoolExecutor::threads() const { return num_threads(); }

void PoolExecutor::run(int64_t n_chunks, ChunkFn f) {
  (void)g_atfork_registered;
  const int threads = num_threads();
  std::unique_lock<std::mutex> lk(g_run, std::defer_lock);
  if (n_chunks > 1 && threads > 1 && lk.try_lock()) {
    if (g_pool == nullptr || g_pool->size() != threads - 1) {
      delete g_pool;
      g_pool = new Pool(threads - 1);
    }
    if (g_pool->worth_it(n_chunks)) {
      const int helpers = static_cast<int>(std::min<int64_t>(threads - 1, n_chunks - 1));
      count_parallel_job();
      g_pool->run(&f, n_chunks, helpers);
      return;
    }
  }
  for (int64_t i = 0; i < n_chunks; ++i) f(i);
}

PoolExecutor& qatcore_pool() {
  static PoolExecutor pool;
  return pool;
}

}  // namespace qatcore
