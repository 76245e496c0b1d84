// The KAN ops' CUDA launchers run on an emulated GPU (the bindings of the emulation module).
// Arguments must already be valid (the ops' own checks, kan_ops.cpp, are tested on the CPU).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "emulated_device.h"

namespace mmrkan {
namespace simt {

at::Tensor group_rational_forward(const EmulatedGpu& gpu, const at::Tensor& x,
                                  const at::Tensor& numerator, const at::Tensor& denominator);
std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward(
    const EmulatedGpu& gpu, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& numerator, const at::Tensor& denominator);
// kan_conv2d: the op's arguments (kan_ops.h).
at::Tensor kan_conv2d_forward(const EmulatedGpu& gpu, const at::Tensor& x,
                              const at::Tensor& base_weight, const at::Tensor& poly_weight,
                              const at::Tensor& norm_scale, int64_t stride, int64_t basis,
                              int64_t normalization, int64_t base_activation,
                              const std::vector<double>& basis_params);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward(
    const EmulatedGpu& gpu, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& base_weight, const at::Tensor& poly_weight, const at::Tensor& norm_scale,
    int64_t stride, int64_t basis, int64_t normalization, int64_t base_activation,
    const std::vector<double>& basis_params);

// The launch plans the launchers compute for these arguments (for the tests and
// benchmarks/kernel_report.py): name -> value.
std::map<std::string, int64_t> group_rational_plan(const at::Tensor& x, const at::Tensor& numerator,
                                                   const at::Tensor& denominator);
std::map<std::string, int64_t> kan_conv2d_plan(const at::Tensor& x, const at::Tensor& poly_weight,
                                               int64_t stride, int64_t basis, bool backward,
                                               int64_t normalization, int64_t base_activation,
                                               const std::vector<double>& basis_params);

// Test kernels for the emulator's own checks; `probe` names one (see emulated_probes.cpp).
at::Tensor run_probe(const std::string& probe, const EmulatedGpu& gpu);
void launch_empty_kernel(dim3 grid, dim3 block, size_t dynamic_smem, size_t smem_per_block);

}  // namespace simt
}  // namespace mmrkan
