#include "exec/default.h"

#include "exec/openmp.h"
#include "exec/pool.h"
#include "exec/threads.h"

namespace qatcore {
namespace {

class DefaultExecutor final : public Executor {
 public:
  int threads() const override { return num_threads(); }
  void run(int64_t n_chunks, ChunkFn f) override {
    if (!openmp_team().try_run(n_chunks, f)) qatcore_pool().run(n_chunks, f);
  }
};

}  // namespace

Executor& default_executor() {
  static DefaultExecutor ex;
  return ex;
}

}  // namespace qatcore
