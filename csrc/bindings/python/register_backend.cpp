// Instruction-set dispatch (dispatch.h), threads and executors (exec/), grains
// (ops/layout.h).
#include <string>
#include <vector>

#include "bindings/python/arrays.h"
#include "bindings/python/register.h"
#include "core/op_checks.h"
#include "dispatch.h"
#include "exec/openmp.h"
#include "exec/pool.h"
#include "exec/threads.h"
#include "ops/layout.h"

namespace qatcore::bindings {
namespace {

std::string set_isa_py(const std::string& name) {
  Isa isa;
  check(check_isa(name.c_str(), &isa));
  std::string previous = isa_name(kernels().isa);
  set_isa(isa);
  return previous;
}

std::vector<std::string> available_isas_py() {
  std::vector<std::string> names;
  for (int i = 0; i < kIsaCount; ++i) {
    if (isa_available(static_cast<Isa>(i))) names.emplace_back(isa_name(static_cast<Isa>(i)));
  }
  return names;
}

}  // namespace

void register_backend(py::module_& m) {
  py::tuple levels(kIsaCount);
  for (int i = 0; i < kIsaCount; ++i) {
    levels[static_cast<size_t>(i)] = isa_name(static_cast<Isa>(i));
  }
  m.attr("ISA_LEVELS") = levels;
  m.def("isa", [] { return std::string(isa_name(kernels().isa)); });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("available_isas", &available_isas_py);
  m.def("set_isa", &set_isa_py, py::arg("isa"));
  m.def("get_num_threads", &num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        check(check_num_threads(n));
        set_num_threads(n);
      },
      py::arg("n"));
  m.def("openmp_threads", &openmp_threads);
  m.def("parallel_jobs", &parallel_jobs);
  m.def("grains", [] {
    py::dict d;
    for (const FamilyGrain& g : kFamilyGrains) d[g.name] = g.grain;
    return d;
  });
  // Tests only: jobs of at least this many chunks wake the pool's sleeping workers.
  m.def("wake_chunks", [] { return kWakeChunks; });
  // Tests only: False makes parallel calls use qatcore's own pool even where an
  // OpenMP team is loaded.
  m.def("openmp_allowed", &openmp_allowed);
  m.def("set_openmp_allowed", &set_openmp_allowed, py::arg("allowed"));
  // Tests only: "serial" runs every operation on the calling thread (a front end's
  // own executor), "default" on the default executor.
  m.def("get_executor", [] { return std::string(executor_name()); });
  m.def(
      "set_executor",
      [](const std::string& name) {
        if (name != "default" && name != "serial") {
          throw py::value_error("name: expected 'default' or 'serial', got '" + name + "'");
        }
        use_serial_executor(name == "serial");
      },
      py::arg("name"));
  // Tests only: a positive grain splits every operation into chunks of n items; 0
  // restores each family's measured grain.
  m.def("get_grain", &grain_override);
  m.def(
      "set_grain",
      [](int64_t n) {
        check(check_grain(n));
        set_grain_override(n);
      },
      py::arg("n"));
}

}  // namespace qatcore::bindings
