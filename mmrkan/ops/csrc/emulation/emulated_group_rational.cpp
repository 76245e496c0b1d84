// group_rational's CUDA launcher and kernels, compiled for the SIMT emulator.
#include "../cuda/group_rational_launcher.h"
#include "emulated_ops.h"

namespace mmrkan {
namespace simt {

at::Tensor group_rational_forward(const EmulatedGpu& gpu, const at::Tensor& x,
                                  const at::Tensor& numerator, const at::Tensor& denominator) {
  return cuda::group_rational_forward(EmulatedDevice(gpu), x, numerator, denominator);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward(
    const EmulatedGpu& gpu, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& numerator, const at::Tensor& denominator) {
  return cuda::group_rational_backward(EmulatedDevice(gpu), grad_out, x, numerator, denominator);
}

}  // namespace simt
}  // namespace mmrkan
