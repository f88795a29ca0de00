// Instruction-set dispatch and threads (dispatch.h, parallel.h).
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/register.h"
#include "dispatch.h"
#include "ops/layout.h"
#include "parallel.h"

namespace qatcore::bindings {
namespace {

std::string set_isa_py(const std::string& name) {
  Isa isa;
  if (!parse_isa(name.c_str(), &isa)) {
    throw py::value_error("isa: expected one of 'scalar', 'avx2', 'avx512', got '" + name + "'");
  }
  if (!isa_available(isa)) {
    throw py::value_error("isa: '" + name + "' is not available on this CPU (best: '" +
                          isa_name(best_isa()) + "')");
  }
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
  m.def("isa", [] { return std::string(isa_name(kernels().isa)); });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("available_isas", &available_isas_py);
  m.def("set_isa", &set_isa_py, py::arg("isa"));
  m.def("get_num_threads", &num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("n: expected an integer >= 1, got " + std::to_string(n));
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
  // Tests only: False makes parallel calls use qatcore's own pool even where an
  // OpenMP team is loaded.
  m.def("openmp_allowed", &openmp_allowed);
  m.def("set_openmp_allowed", &set_openmp_allowed, py::arg("allowed"));
  // Tests only: a positive grain splits every operation into chunks of n items; 0
  // restores each family's measured grain.
  m.def("get_grain", &grain_override);
  m.def(
      "set_grain",
      [](int64_t n) {
        if (n < 0) throw py::value_error("n: expected an integer >= 0, got " + std::to_string(n));
        set_grain_override(n);
      },
      py::arg("n"));
}

}  // namespace qatcore::bindings
