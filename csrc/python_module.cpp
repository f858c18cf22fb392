// The Python module pygan._C: importing it registers the operators (static initializers of the TORCH_LIBRARY
// blocks). Its functions are plain helpers, not ops: how it was built (and which build of the CPU kernels this CPU
// runs), and the C++ activation table, for the test that keeps it equal to the Python one. Not part of the
// libtorch (CMake) build.
#include <torch/extension.h>

#include "common/activation.h"
#include "common/cpu_isa.h"

#include <string>

#ifndef PYGAN_TORCH_VERSION
#define PYGAN_TORCH_VERSION "unknown"
#endif

PYBIND11_MODULE(_C, m) {
  m.def("build_info", [] {
    pybind11::dict info;
    info["torch"] = PYGAN_TORCH_VERSION;
    info["cpu"] = true;
    info["cpu_isa"] = pygan::cpu_isa_name(pygan::cpu_isa());  // which build of the CPU kernels runs here
#ifdef PYGAN_WITH_CUDA
    info["cuda"] = PYGAN_CUDA_VERSION;
    info["cuda_arch_list"] = PYGAN_CUDA_ARCHS;
#else
    info["cuda"] = pybind11::none();
    info["cuda_arch_list"] = pybind11::none();
#endif
    return info;
  });
  m.def("activation_table", [] {
    // One dict of strings per row of common/activation.h's kActivations, in its order.
    pybind11::list rows;
    for (const pygan::ActivationSpec& s : pygan::kActivations) {
      pybind11::dict row;
      row["name"] = std::string(s.name);
      row["slope"] = pygan::slope_name(s.slope);
      row["invertible"] = pygan::when_name(s.invertible);
      row["output_gives_derivative"] = pygan::when_name(s.output_gives_derivative);
      rows.append(row);
    }
    return rows;
  }, "The C++ activation table: a list of dicts (name, slope, invertible, output_gives_derivative), in table order.");
}
