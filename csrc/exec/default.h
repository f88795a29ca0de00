// The executor qatcore's Python binding passes to every operation: the process's
// OpenMP team where one is loaded and allowed (exec/openmp.h), else qatcore's own
// pool (exec/pool.h), with num_threads() threads (exec/threads.h).
#pragma once
#include "exec/executor.h"

namespace qatcore {

Executor& default_executor();

}  // namespace qatcore
