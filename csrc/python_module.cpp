// The Python module pygan._C: importing it registers the operators (static initializers of the TORCH_LIBRARY
// blocks). Its only function reports how it was built
// (and which build of the CPU kernels this CPU runs). Not part of the libtorch (CMake) build.
#include <torch/extension.h>

#include "common/cpu_isa.h"

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
}
