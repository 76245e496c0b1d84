#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("with_cuda", []() {
#ifdef MMRKAN_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the extension was compiled with its CUDA kernels");
}
