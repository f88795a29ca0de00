// The process's OpenMP team as an executor. qatcore links no OpenMP runtime of its
// own (it would fight PyTorch's copy in one process); it borrows the libgomp
// already loaded, if any, and never in a forked child (see openmp.cpp).
#pragma once
#include <cstdint>

#include "exec/executor.h"

namespace qatcore {

class OpenMpExecutor final : public Executor {
 public:
  int threads() const override;
  // On the team, or on the calling thread when the team cannot be used.
  void run(int64_t n_chunks, ChunkFn f) override;
  // run(), except that it returns false, having run nothing, when no team can be
  // used (none loaded, not allowed, or a forked child), so that the caller can
  // take the job elsewhere. A usable team runs the job with at most num_threads()
  // and its own thread setting; with one thread, or while another caller has the
  // team, the job runs on the calling thread.
  bool try_run(int64_t n_chunks, ChunkFn f);
};

// The process's one team.
OpenMpExecutor& openmp_team();

// Whether the default executor runs on the OpenMP team of the process (PyTorch's
// threads, when PyTorch is loaded) rather than on qatcore's own pool. Tests turn
// the team off to check the pool as well (QATCORE_OPENMP=0 does the same).
bool openmp_threads();
bool openmp_allowed();
void set_openmp_allowed(bool allowed);
// Called once when the extension loads: notices a process forked after its team ran.
void note_load();

}  // namespace qatcore
