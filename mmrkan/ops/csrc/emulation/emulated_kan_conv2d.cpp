// kan_conv2d's CUDA launcher and kernels, compiled for the SIMT emulator.
#include "../cuda/kan_conv2d_launcher.h"
#include "emulated_ops.h"

namespace mmrkan {
namespace simt {

at::Tensor kan_conv2d_forward(const EmulatedGpu& gpu, const at::Tensor& x,
                              const at::Tensor& base_weight, const at::Tensor& poly_weight,
                              int64_t stride, int64_t basis) {
  return cuda::kan_conv2d_forward(EmulatedDevice(gpu), x, base_weight, poly_weight, stride, basis);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward(
    const EmulatedGpu& gpu, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& base_weight, const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  return cuda::kan_conv2d_backward(EmulatedDevice(gpu), grad_out, x, base_weight, poly_weight,
                                   stride, basis);
}

}  // namespace simt
}  // namespace mmrkan
