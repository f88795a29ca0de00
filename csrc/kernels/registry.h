// The kernel tables that each instruction-set build of csrc/kernels/ exports.
// Included by the dispatcher only.
#pragma once
#include "kernels/fake_quant.h"
#include "kernels/ifmr.h"
#include "kernels/reduce.h"
#include "kernels/ulq.h"

#define QATCORE_DECLARE_ISA_TABLES(ns)      \
  namespace qatcore {                       \
  namespace ns {                            \
  extern const FakeQuantKernels kFakeQuant; \
  extern const ReduceKernels kReduce;       \
  extern const UlqKernels kUlq;             \
  extern const IfmrKernels kIfmr;           \
  }                                         \
  }

QATCORE_DECLARE_ISA_TABLES(scalar)
#ifdef QATCORE_X86
QATCORE_DECLARE_ISA_TABLES(avx2)
QATCORE_DECLARE_ISA_TABLES(avx512)
#endif
