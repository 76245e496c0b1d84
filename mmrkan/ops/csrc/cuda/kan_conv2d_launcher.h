// Host side of the kan_conv2d CUDA kernels: geometry, dtype and basis-count dispatch, launch
// plan, launches and the two-pass weight-gradient reduction. Templated on the device that runs
// the kernels, see kan_launch_utils.h. The caller
// has checked the arguments (check_kan_conv2d_args) and set the current device.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>

#include "../common/cuda/kan_conv2d_kernel.cuh"
#include "../kan_ops.h"
#include "kan_launch_utils.h"

namespace mmrkan {
namespace cuda {

static_assert(kNumTaps == ::mmrkan::kNumTaps, "the kernels' window must match kan_ops.h");
static_assert(kChebyshev == static_cast<int>(KanBasis::kChebyshev),
              "the kernels' basis codes must match kan_ops.h");

inline ConvGeometry make_conv_geometry(const at::Tensor& x, int64_t stride) {
  const int64_t max_side = std::numeric_limits<int32_t>::max() / 4;
  TORCH_CHECK(x.size(2) <= max_side && x.size(3) <= max_side,
              "kan_conv2d: spatial size too large for the CUDA kernel: ", x.sizes());
  const int height = static_cast<int>(x.size(2));
  const int width = static_cast<int>(x.size(3));
  const int out_height = static_cast<int>(kan_conv2d_output_size(height, stride));
  const int out_width = static_cast<int>(kan_conv2d_output_size(width, stride));
  const ConvTiling tiling = make_conv_tiling(out_height, out_width);
  TORCH_CHECK(tiling.tiles_h * tiling.tiles_w <= std::numeric_limits<int32_t>::max(),
              "kan_conv2d: spatial size too large for the CUDA kernel: ", x.sizes());
  return make_conv_geometry(x.size(0) * x.size(1), height, width, out_height, out_width,
                            static_cast<int>(stride));
}

template <typename scalar_t, int kNumFunctions, typename Device>
void launch_kan_conv2d_forward(const Device& device, const at::Tensor& x,
                               const at::Tensor& base_weight, const at::Tensor& poly_weight,
                               const ConvGeometry& geo, int basis, at::Tensor& y) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto kernel = kan_conv2d_forward_kernel<scalar_t, opmath_t, kNumFunctions>;
  const ConvPlan plan = plan_kan_conv2d_forward(geo, sizeof(opmath_t), device.sm_count(),
                                                occupancy(device, kernel));
  device.launch(kernel, dim3(static_cast<unsigned>(plan.blocks)), dim3(kThreadsPerBlock),
                plan.smem_bytes, x.const_data_ptr<scalar_t>(),
                base_weight.const_data_ptr<opmath_t>(), poly_weight.const_data_ptr<opmath_t>(),
                y.mutable_data_ptr<scalar_t>(), geo, make_box(forward_window(geo)), basis);
}

template <typename scalar_t, int kNumFunctions, typename Device>
void launch_kan_conv2d_backward(const Device& device, const at::Tensor& grad_out,
                                const at::Tensor& x, const at::Tensor& base_weight,
                                const at::Tensor& poly_weight, const ConvGeometry& geo, int basis,
                                at::Tensor& grad_x, at::Tensor& grad_weights) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int kNumWeights = kNumTaps * (kNumFunctions + 1);
  const auto kernel = kan_conv2d_backward_kernel<scalar_t, opmath_t, kNumFunctions>;
  const ConvPlan plan = plan_kan_conv2d_backward(geo, sizeof(opmath_t), device.sm_count(),
                                                 occupancy(device, kernel));
  at::Tensor partials = at::empty({plan.blocks, kNumWeights}, base_weight.options());
  device.launch(kernel, dim3(static_cast<unsigned>(plan.blocks)), dim3(kThreadsPerBlock),
                plan.smem_bytes, grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                base_weight.const_data_ptr<opmath_t>(), poly_weight.const_data_ptr<opmath_t>(),
                grad_x.mutable_data_ptr<scalar_t>(), partials.mutable_data_ptr<opmath_t>(), geo,
                make_box(backward_dy_box(geo)), make_box(backward_owned_box(geo)), basis);
  reduce_partials(device, partials.const_data_ptr<opmath_t>(), plan.blocks, 1, kNumWeights, 1, 1,
                  0, kNumWeights, grad_weights.mutable_data_ptr<opmath_t>());
}

// Calls body(std::integral_constant<int, K>()) for the runtime number K of basis functions.
template <typename Body>
void dispatch_num_functions(int64_t num_functions, Body&& body) {
  TORCH_CHECK(num_functions >= 1 && num_functions <= kMaxFunctions,
              "kan_conv2d: the CUDA kernels support 1 to ", kMaxFunctions,
              " basis functions (poly_weight.size(1), Chebyshev degree + 1), got ", num_functions);
  switch (num_functions) {
    case 1: body(std::integral_constant<int, 1>()); break;
    case 2: body(std::integral_constant<int, 2>()); break;
    case 3: body(std::integral_constant<int, 3>()); break;
    case 4: body(std::integral_constant<int, 4>()); break;
    case 5: body(std::integral_constant<int, 5>()); break;
    case 6: body(std::integral_constant<int, 6>()); break;
    case 7: body(std::integral_constant<int, 7>()); break;
    case 8: body(std::integral_constant<int, 8>()); break;
  }
}

template <typename Device>
at::Tensor kan_conv2d_forward(const Device& device, const at::Tensor& x,
                              const at::Tensor& base_weight, const at::Tensor& poly_weight,
                              int64_t stride, int64_t basis) {
  at::Tensor y = at::empty({x.size(0), x.size(1), kan_conv2d_output_size(x.size(2), stride),
                            kan_conv2d_output_size(x.size(3), stride)},
                           x.options());
  if (y.numel() == 0) return y;
  const ConvGeometry geo = make_conv_geometry(x, stride);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_forward_cuda", [&] {
    dispatch_num_functions(poly_weight.size(1), [&](auto num_functions) {
      launch_kan_conv2d_forward<scalar_t, decltype(num_functions)::value>(
          device, x, base_weight, poly_weight, geo, static_cast<int>(basis), y);
    });
  });
  return y;
}

// Returns (grad_x, grad_base_weight, grad_poly_weight).
template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward(
    const Device& device, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& base_weight, const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  at::Tensor grad_x = at::empty_like(x);
  const int64_t num_features = 1 + poly_weight.size(1);
  // Column 0: base_weight's gradient, columns 1..K: poly_weight's.
  at::Tensor grad_weights = at::empty({kNumTaps, num_features}, base_weight.options());
  if (grad_out.numel() == 0) {
    grad_weights.zero_();
  } else {
    const ConvGeometry geo = make_conv_geometry(x, stride);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                    "kan_conv2d_backward_cuda", [&] {
      dispatch_num_functions(poly_weight.size(1), [&](auto num_functions) {
        launch_kan_conv2d_backward<scalar_t, decltype(num_functions)::value>(
            device, grad_out, x, base_weight, poly_weight, geo, static_cast<int>(basis), grad_x,
            grad_weights);
      });
    });
  }
  return {grad_x, grad_weights.select(1, 0).contiguous(),
          grad_weights.narrow(1, 1, num_features - 1).contiguous()};
}

}  // namespace cuda
}  // namespace mmrkan
