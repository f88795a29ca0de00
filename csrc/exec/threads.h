// qatcore's thread settings, which its own executors (exec/pool.h, exec/openmp.h,
// exec/default.h) follow; an executor a front end brings has its own.
#pragma once
#include <cstdint>

namespace qatcore {

// Threads a call may use, the calling thread included: QATCORE_NUM_THREADS (applied
// from Python) or the cores this process may run on.
int num_threads();
void set_num_threads(int n);  // n >= 1

// How many calls have run on more than one thread so far (for tests); qatcore's
// executors count each such call once.
uint64_t parallel_jobs();
void count_parallel_job();

}  // namespace qatcore
