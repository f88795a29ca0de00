// A small thread pool with fixed chunking.
//
// Work is cut into chunks whose boundaries depend on the problem alone, never
// on the thread count; threads only decide who runs which chunk. Every result
// that combines chunks (in chunk order) is therefore bit-identical for 1 or N
// threads. No OpenMP runtime: it would fight PyTorch's copy in one process.
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
// Elements per chunk for elementwise work and reductions over blocks. Tests
// lower it so that small inputs are split across threads too.
int64_t grain();
void set_grain(int64_t n);  // n >= 1

// Runs f(i) for every i in [0, n_chunks), on the calling thread and up to
// num_threads() - 1 pool threads. Serial when one thread is asked for, when
// there is one chunk, or when another caller is using the pool right now.
// f must not throw.
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
