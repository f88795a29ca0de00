// qatcore's own thread pool as an executor: num_threads() - 1 workers that join
// the calling thread, for processes without an OpenMP team to borrow.
#pragma once
#include <cstdint>

#include "exec/executor.h"

namespace qatcore {

// Sleeping workers are woken only for a job of at least this many chunks (each
// family's grain makes a chunk a few microseconds of work), or for one that comes
// within the pool's spin time of the previous call: a short job now and then is
// over before a woken worker could take a share. The tests read it (_core.wake_chunks).
constexpr int64_t kWakeChunks = 4;

class PoolExecutor final : public Executor {
 public:
  int threads() const override;
  // On the calling thread and up to num_threads() - 1 workers. Serial when one
  // thread is asked for, when there is one chunk, when another caller is using the
  // pool right now, or when the workers sleep and the job is too short to wake
  // them for.
  void run(int64_t n_chunks, ChunkFn f) override;
};

// The process's one pool, started on first use.
PoolExecutor& qatcore_pool();

}  // namespace qatcore
