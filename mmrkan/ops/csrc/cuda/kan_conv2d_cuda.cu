// CUDA implementation of kan_conv2d: kernels in common/cuda/kan_conv2d_kernel.cuh, host side in
// kan_conv2d_launcher.h, run on the current device and stream.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "../kan_ops.h"
#include "kan_conv2d_launcher.h"
#include "kan_cuda_device.cuh"

namespace mmrkan {
namespace {

at::Tensor kan_conv2d_forward_cuda(const at::Tensor& x, const at::Tensor& base_weight,
                                   const at::Tensor& poly_weight, const at::Tensor& norm_scale,
                                   int64_t stride, int64_t basis, int64_t normalization,
                                   int64_t base_activation, at::ArrayRef<double> basis_params) {
  check_kan_conv2d_args(x, base_weight, poly_weight, norm_scale, stride, basis, normalization,
                        base_activation, basis_params);
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  return cuda::kan_conv2d_forward(
      cuda::CudaDevice(), x, base_weight, poly_weight, norm_scale,
      cuda::ConvOptions{stride, basis, normalization, base_activation, basis_params});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& base_weight,
    const at::Tensor& poly_weight, const at::Tensor& norm_scale, int64_t stride, int64_t basis,
    int64_t normalization, int64_t base_activation, at::ArrayRef<double> basis_params) {
  check_kan_conv2d_args(x, base_weight, poly_weight, norm_scale, stride, basis, normalization,
                        base_activation, basis_params);
  check_grad_out("kan_conv2d_backward", grad_out, x,
                 {x.size(0), x.size(1), kan_conv2d_output_size(x.size(2), stride),
                  kan_conv2d_output_size(x.size(3), stride)});
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  return cuda::kan_conv2d_backward(
      cuda::CudaDevice(), grad_out, x, base_weight, poly_weight, norm_scale,
      cuda::ConvOptions{stride, basis, normalization, base_activation, basis_params});
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CUDA, m) {
  m.impl("kan_conv2d_forward", &kan_conv2d_forward_cuda);
  m.impl("kan_conv2d_backward", &kan_conv2d_backward_cuda);
}

}  // namespace mmrkan
