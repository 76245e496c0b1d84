// Host side of the group_rational CUDA kernels: dtype and rational-order dispatch, vector width,
// launch plan and launches (the backward, with its coefficient reduction, is one kernel launch
// plus a 4-byte memset of its completion counter). Templated on the device that runs the
// kernels: CudaDevice (kan_cuda_device.cuh) for group_rational_cuda.cu, the SIMT emulator's
// EmulatedDevice (csrc/emulation) for the tests. The caller has checked the arguments
// (check_group_rational_args) and set the current device.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <tuple>

#include "../common/cuda/group_rational_kernel.cuh"
#include "../kan_ops.h"
#include "kan_launch_utils.h"

namespace mmrkan {
namespace cuda {

// The orders the op takes (kan_ops.h); dispatch_rational_order has one case for each.
static_assert(sizeof(kRationalOrders) == 3 * sizeof(kRationalOrders[0]) &&
                  kRationalOrders[0][0] == 3 && kRationalOrders[0][1] == 2 &&
                  kRationalOrders[1][0] == 5 && kRationalOrders[1][1] == 4 &&
                  kRationalOrders[2][0] == 7 && kRationalOrders[2][1] == 6,
              "the kernels' rational orders must match kan_ops.h");

// Calls f(Order()) with the RationalOrder of the coefficient shapes (numerator (., m + 1),
// denominator (g, n)); every order is a kernel instantiation of its own.
template <typename F>
void dispatch_rational_order(const at::Tensor& numerator, const at::Tensor& denominator, F&& f) {
  const int64_t m = numerator.size(1) - 1;
  const int64_t n = denominator.size(1);
  if (m == 5 && n == 4) {
    f(RationalOrder<5, 4>());
  } else if (m == 3 && n == 2) {
    f(RationalOrder<3, 2>());
  } else if (m == 7 && n == 6) {
    f(RationalOrder<7, 6>());
  } else {
    TORCH_CHECK(false, "group_rational: no CUDA kernel for the order (", m, ", ", n, ")");
  }
}

inline int rational_vector_width(const at::Tensor& x, const at::Tensor& denominator,
                                 std::initializer_list<const void*> pointers) {
  bool aligned = true;
  for (const void* ptr : pointers) aligned = aligned && is_aligned(ptr, kVectorBytes);
  return rational_vector_width(x.size(-1) / denominator.size(0), x.element_size(), aligned);
}

inline RationalPlan plan_rational_launch(const RationalLayout& layout) {
  const RationalPlan plan = plan_group_rational(layout);
  TORCH_CHECK(layout.groups * plan.slices <= std::numeric_limits<int32_t>::max(),
              "group_rational: too many channels for the CUDA kernel: ", layout.channels);
  return plan;
}

inline RationalLayout make_rational_layout(const at::Tensor& x, const at::Tensor& numerator,
                                           const at::Tensor& denominator, int vec) {
  return make_rational_layout(x.numel(), x.size(-1), denominator.size(0), numerator.size(0) == 1,
                              vec);
}

template <typename scalar_t, typename Order, int kVec, typename Device>
void launch_group_rational_forward(const Device& device, const at::Tensor& x,
                                   const at::Tensor& numerator, const at::Tensor& denominator,
                                   at::Tensor& y) {
  using opmath_t = at::opmath_type<scalar_t>;
  const RationalLayout layout = make_rational_layout(x, numerator, denominator, kVec);
  const RationalPlan plan = plan_rational_launch(layout);
  device.launch(group_rational_forward_kernel<scalar_t, opmath_t, Order, kVec>,
                plan.grid, dim3(kThreadsPerBlock), 0, x.const_data_ptr<scalar_t>(),
                numerator.const_data_ptr<opmath_t>(), denominator.const_data_ptr<opmath_t>(),
                y.mutable_data_ptr<scalar_t>(), layout, plan);
}

template <typename scalar_t, typename Order, int kVec, typename Device>
void launch_group_rational_backward(const Device& device, const at::Tensor& grad_out,
                                    const at::Tensor& x, const at::Tensor& numerator,
                                    const at::Tensor& denominator, at::Tensor& grad_x,
                                    at::Tensor& grad_numerator, at::Tensor& grad_denominator) {
  using opmath_t = at::opmath_type<scalar_t>;
  const RationalLayout layout = make_rational_layout(x, numerator, denominator, kVec);
  const RationalPlan plan = plan_rational_launch(layout);
  at::Tensor partials =
      at::empty({Order::kCoeffs, plan.num_blocks}, numerator.options());
  at::Tensor counter = at::empty({1}, numerator.options().dtype(at::kInt));
  device.memset(counter.mutable_data_ptr(), 0, sizeof(unsigned));
  device.launch(group_rational_backward_kernel<scalar_t, opmath_t, Order, kVec>,
                plan.grid, dim3(kThreadsPerBlock), 0, grad_out.const_data_ptr<scalar_t>(),
                x.const_data_ptr<scalar_t>(), numerator.const_data_ptr<opmath_t>(),
                denominator.const_data_ptr<opmath_t>(), grad_x.mutable_data_ptr<scalar_t>(),
                grad_numerator.mutable_data_ptr<opmath_t>(),
                grad_denominator.mutable_data_ptr<opmath_t>(),
                partials.mutable_data_ptr<opmath_t>(),
                static_cast<unsigned*>(counter.mutable_data_ptr()), layout, plan);
}

template <typename Device>
at::Tensor group_rational_forward(const Device& device, const at::Tensor& x,
                                  const at::Tensor& numerator, const at::Tensor& denominator) {
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "group_rational_forward_cuda", [&] {
    constexpr int kVec = kVectorBytes / sizeof(scalar_t);
    const bool vector =
        rational_vector_width(x, denominator, {x.const_data_ptr(), y.const_data_ptr()}) == kVec;
    dispatch_rational_order(numerator, denominator, [&](auto order) {
      using Order = decltype(order);
      if (vector) {
        launch_group_rational_forward<scalar_t, Order, kVec>(device, x, numerator, denominator, y);
      } else {
        launch_group_rational_forward<scalar_t, Order, 1>(device, x, numerator, denominator, y);
      }
    });
  });
  return y;
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward(
    const Device& device, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& numerator, const at::Tensor& denominator) {
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_numerator = at::empty_like(numerator);
  at::Tensor grad_denominator = at::empty_like(denominator);
  if (x.numel() == 0) {
    grad_numerator.zero_();
    grad_denominator.zero_();
    return {grad_x, grad_numerator, grad_denominator};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "group_rational_backward_cuda", [&] {
    constexpr int kVec = kVectorBytes / sizeof(scalar_t);
    const bool vector = rational_vector_width(x, denominator,
                                              {x.const_data_ptr(), grad_out.const_data_ptr(),
                                               grad_x.const_data_ptr()}) == kVec;
    dispatch_rational_order(numerator, denominator, [&](auto order) {
      using Order = decltype(order);
      if (vector) {
        launch_group_rational_backward<scalar_t, Order, kVec>(
            device, grad_out, x, numerator, denominator, grad_x, grad_numerator, grad_denominator);
      } else {
        launch_group_rational_backward<scalar_t, Order, 1>(
            device, grad_out, x, numerator, denominator, grad_x, grad_numerator, grad_denominator);
      }
    });
  });
  return {grad_x, grad_numerator, grad_denominator};
}

}  // namespace cuda
}  // namespace mmrkan
