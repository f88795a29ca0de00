// Where the operations' chunks run. An operation cuts its work into chunks whose
// boundaries depend on the problem alone, never on the executor or its thread
// count; the executor only decides who runs which chunk. Every result that
// combines chunks (in chunk order) is therefore bit-identical on any executor.
//
// Implementations: SerialExecutor (below), qatcore's own pool (exec/pool.h), the
// process's OpenMP team (exec/openmp.h), and the default that picks between the
// last two (exec/default.h). A front end whose framework owns the threads (XLA's
// intra-op pool) implements Executor over them.
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

class Executor {
 public:
  virtual ~Executor() = default;
  // How many threads a job may use, the calling thread included (>= 1). Operations
  // that keep one part of state per thread (exact reductions) size them by it.
  virtual int threads() const = 0;
  // Runs f(i) once for every i in [0, n_chunks) and returns when all are done, on
  // the calling thread and up to threads() - 1 others. f must not throw.
  virtual void run(int64_t n_chunks, ChunkFn f) = 0;
};

// Everything on the calling thread.
class SerialExecutor final : public Executor {
 public:
  int threads() const override { return 1; }
  void run(int64_t n_chunks, ChunkFn f) override {
    for (int64_t i = 0; i < n_chunks; ++i) f(i);
  }
};

// Splits [0, n) into chunks of `per_chunk` items and runs f(begin, end) on each.
template <class F>
void parallel_ranges(Executor& ex, int64_t n, int64_t per_chunk, F&& f) {
  if (n <= 0) return;
  if (per_chunk < 1) per_chunk = 1;
  const int64_t chunks = (n + per_chunk - 1) / per_chunk;
  auto body = [&](int64_t i) {
    const int64_t a = i * per_chunk;
    f(a, n - a < per_chunk ? n : a + per_chunk);
  };
  ex.run(chunks, ChunkFn(body));
}

}  // namespace qatcore
