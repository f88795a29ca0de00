// A small thread pool with fixed chunking.
//
// Work is cut into chunks whose boundaries depend on the problem alone, never
// on the thread count; threads only decide who runs which chunk. Every result
// that combines chunks (in chunk order) is therefore bit-identical for 1 or N
// threads. qatcore links no OpenMP runtime of its own (it would fight PyTorch's
// copy in one process); it borrows the one already loaded, if any.
#pragma once
#include <cstdint>
#include <type_traits>

namespace qatcore {

// A non-owning reference to a callable void(int64_t); the callable must outlive
// the call it is passed to.
class ChunkFn {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, ChunkFn>>>
  ChunkFn(F& f) : obj_(&f), call_([](void* o, int64_t i) { (*static_cast<F*>(o))(i); }) {}
  void operator()(int64_t i) const { call_(obj_, i); }

 private:
  void* obj_;
  void (*call_)(void*, int64_t);
};

int num_threads();
void set_num_threads(int n);  // n >= 1
// Each family of operations sizes its chunks from its own measured grain
// (ops/layout.h); a positive override replaces all of them. Tests set a tiny one
// so that small inputs are split across threads too. 0: no override.
int64_t grain_override();
void set_grain_override(int64_t n);  // n >= 0

// Whether parallel calls run on the OpenMP team of the process (PyTorch's
// threads, when PyTorch is loaded; see parallel.cpp) rather than on qatcore's own
// pool. Tests turn the team off to check the pool as well.
bool openmp_threads();
bool openmp_allowed();
void set_openmp_allowed(bool allowed);
// Called once when the extension loads (see parallel.cpp).
void note_load();
// How many calls have run on more than one thread so far (for tests).
uint64_t parallel_jobs();

// Runs f(i) for every i in [0, n_chunks), on the calling thread and up to
// num_threads() - 1 others, which take chunks in turn: the OpenMP team when
// openmp_threads() (capped by its own thread setting too), else qatcore's pool.
// Serial when one thread is asked for, when there is one chunk, when another
// caller is using the threads right now, or when the pool's workers sleep and
// the job is too short to wake them for. f must not throw.
void parallel_chunks(int64_t n_chunks, ChunkFn f);

// Splits [0, n) into chunks of `per_chunk` items and runs f(begin, end) on each.
template <class F>
void parallel_ranges(int64_t n, int64_t per_chunk, F&& f) {
  if (n <= 0) return;
  if (per_chunk < 1) per_chunk = 1;
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  auto body = [&](int64_t i) {
    const int64_t a = i * per_chunk;
    f(a, n - a < per_chunk ? n : a + per_chunk);
  };
  parallel_chunks(chunks, ChunkFn(body));
}

}  // namespace qatcore
