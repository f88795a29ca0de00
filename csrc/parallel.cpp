#include "parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace qatcore {
namespace {

class Pool {
 public:
  explicit Pool(int workers) {
    threads_.reserve(static_cast<size_t>(workers));
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  int size() const { return static_cast<int>(threads_.size()); }

  // One job at a time: the caller holds g_run.
  void run(ChunkFn* fn, int64_t n_chunks, int helpers) {
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      n_ = n_chunks;
      next_.store(0);
      wanted_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lk(m_);
    wanted_ = 0;  // a worker that wakes only now finds nothing to join
    done_.wait(lk, [this] { return running_ == 0; });
    fn_ = nullptr;
  }

 private:
  void drain() {
    for (int64_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*fn_)(i);
  }

  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (wanted_ == 0) continue;
      --wanted_;
      ++running_;
      lk.unlock();
      drain();
      lk.lock();
      if (--running_ == 0) done_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  int wanted_ = 0;
  int running_ = 0;
  ChunkFn* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
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
std::atomic<int64_t> g_grain{int64_t{1} << 16};
// Held for the whole of a parallel job, and across fork().
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

int num_threads() { return g_threads.load(); }
void set_num_threads(int n) { g_threads.store(std::max(1, n)); }
int64_t grain() { return g_grain.load(); }
void set_grain(int64_t n) { g_grain.store(std::max<int64_t>(1, n)); }

void parallel_chunks(int64_t n_chunks, ChunkFn f) {
  (void)g_atfork_registered;
  const int threads = num_threads();
  std::unique_lock<std::mutex> lk(g_run, std::defer_lock);
  if (n_chunks > 1 && threads > 1 && lk.try_lock()) {
    if (g_pool == nullptr || g_pool->size() != threads - 1) {
      delete g_pool;
      g_pool = new Pool(threads - 1);
    }
    const int helpers = static_cast<int>(std::min<int64_t>(threads - 1, n_chunks - 1));
    g_pool->run(&f, n_chunks, helpers);
    return;
  }
  for (int64_t i = 0; i < n_chunks; ++i) f(i);
}

}  // namespace qatcore
