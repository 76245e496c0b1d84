// CUDA implementation of group_rational: kernels in common/cuda/group_rational_kernel.cuh, host
// side in group_rational_launcher.h, run on the current device and stream.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "../kan_ops.h"
#include "group_rational_launcher.h"
#include "kan_cuda_device.cuh"

namespace mmrkan {
namespace {

at::Tensor group_rational_forward_cuda(const at::Tensor& x, const at::Tensor& numerator,
                                       const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  return cuda::group_rational_forward(cuda::CudaDevice(), x, numerator, denominator);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  check_grad_out("group_rational_backward", grad_out, x, x.sizes());
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  return cuda::group_rational_backward(cuda::CudaDevice(), grad_out, x, numerator, denominator);
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CUDA, m) {
  m.impl("group_rational_forward", &group_rational_forward_cuda);
  m.impl("group_rational_backward", &group_rational_backward_cuda);
}

}  // namespace mmrkan
