// How the pool (exec/pool.cpp) and the OpenMP team (exec/openmp.cpp) share out the
// chunks of one job.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "exec/executor.h"

namespace qatcore {

// Chunks [0, n) in contiguous shares, one per participant. Each participant takes
// its own share front to back, so that repeated calls on the same data find their
// share in the same core's cache; whoever is done takes what is left of the
// others' shares, so a late or busy participant never holds a call up.
class Shares {
 public:
  void reset(int64_t n_chunks, int parts) {
    if (parts > capacity_) {
      shares_.reset(new Share[static_cast<size_t>(parts)]);
      capacity_ = parts;
    }
    parts_ = parts;
    for (int p = 0; p < parts; ++p) {
      shares_[p].next.store(n_chunks * p / parts, std::memory_order_relaxed);
      shares_[p].end = n_chunks * (p + 1) / parts;
    }
  }

  // Participant p's own share, then the rest of everyone else's.
  void drain(int p, const ChunkFn& f) {
    for (int k = 0; k < parts_; ++k) {
      Share& s = shares_[(p + k) % parts_];
      for (int64_t i = s.next.fetch_add(1); i < s.end; i = s.next.fetch_add(1)) f(i);
    }
  }

 private:
  struct alignas(64) Share {  // one cache line each: owners do not contend
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  std::unique_ptr<Share[]> shares_;
  int capacity_ = 0;
  int parts_ = 0;
};

}  // namespace qatcore
