// Host side of the kan_conv2d CUDA kernels: geometry, dispatch to the kernel instantiations,
// launch plan and launches (the backward, with its weight-gradient reduction, is one kernel
// launch plus a 4-byte memset of its completion counter). Templated on the device that runs the
// kernels, see kan_launch_utils.h. The caller has checked the arguments (check_kan_conv2d_args)
// and set the current device.
//
// Instantiations (docs/ops.md, "Adding a basis family or a rational order"): what the RKAN
// defaults run is specialised (ChebyshevBasis<3> and <4>, strides 1 and 2, fp32/bf16/fp16: 12 per
// direction); everything else (rbf, other K, fp64) runs RuntimeBasis (4 dtypes x 2 strides per
// direction).
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

// Outputs per thread along a row: stride 1 reads 4 window columns for 2 outputs (6 taps' worth
// of loads saved); at stride 2 a strip of 2 would need twice the window (shared memory).
template <int kStride>
constexpr int strip_of() {
  return kStride == 1 ? 2 : 1;
}

template <typename opmath_t, typename Basis, int kStride>
ConvGeometry make_conv_geometry(const at::Tensor& x, int64_t min_tiles_per_block,
                                bool backward) {
  const int64_t max_side = std::numeric_limits<int32_t>::max() / 4;
  TORCH_CHECK(x.size(2) <= max_side && x.size(3) <= max_side,
              "kan_conv2d: spatial size too large for the CUDA kernel: ", x.sizes());
  using F = Features<opmath_t, Basis::kStored>;
  constexpr int kPositionBytes = F::kChunks * kVectorBytes;
  // The forward keeps a window of features in shared memory, the backward a grad_out tile.
  const ConvGeometry geo = make_conv_geometry(
      x.size(0) * x.size(1), static_cast<int>(x.size(2)), static_cast<int>(x.size(3)), kStride,
      strip_of<kStride>(), backward ? 0 : kPositionBytes,
      backward ? static_cast<int>(sizeof(opmath_t)) : 0, kNumTaps * kPositionBytes,
      min_tiles_per_block);
  // Tile counts, and offsets inside the planes of a tile, in 31 bits.
  TORCH_CHECK(geo.num_tiles + geo.tiles_per_block <= std::numeric_limits<int32_t>::max() &&
                  x.size(2) * x.size(3) * geo.tile_planes <= std::numeric_limits<int32_t>::max(),
              "kan_conv2d: tensor too large for the CUDA kernel: ", x.sizes());
  return geo;
}

template <typename scalar_t, typename Basis, int kStride, typename Device>
void launch_kan_conv2d_forward(const Device& device, const at::Tensor& x,
                               const at::Tensor& base_weight, const at::Tensor& poly_weight,
                               const Basis& basis, at::Tensor& y) {
  using opmath_t = at::opmath_type<scalar_t>;
  const ConvGeometry geo = make_conv_geometry<opmath_t, Basis, kStride>(x, 1, false);
  check_shared_memory(device, geo.smem_bytes, "kan_conv2d");
  device.launch(
      kan_conv2d_forward_kernel<scalar_t, opmath_t, Basis, kStride, strip_of<kStride>()>,
      dim3(static_cast<unsigned>(geo.blocks)), dim3(kThreadsPerBlock), geo.smem_bytes,
      x.const_data_ptr<scalar_t>(), base_weight.const_data_ptr<opmath_t>(),
      poly_weight.const_data_ptr<opmath_t>(), y.mutable_data_ptr<scalar_t>(), geo, basis);
}

// At least this many tiles per block: the block's final sums (tens of instructions per weight
// per thread) are amortised over its tiles.
constexpr int64_t kBackwardMinTilesPerBlock = 4;

template <typename scalar_t, typename Basis, int kStride, typename Device>
void launch_kan_conv2d_backward(const Device& device, const at::Tensor& grad_out,
                                const at::Tensor& x, const at::Tensor& base_weight,
                                const at::Tensor& poly_weight, const Basis& basis,
                                at::Tensor& grad_x, at::Tensor& grad_base_weight,
                                at::Tensor& grad_poly_weight) {
  using opmath_t = at::opmath_type<scalar_t>;
  const ConvGeometry geo =
      make_conv_geometry<opmath_t, Basis, kStride>(x, kBackwardMinTilesPerBlock, true);
  check_shared_memory(device, geo.smem_bytes, "kan_conv2d");
  at::Tensor partials = at::empty({WeightSums<Basis>::kCount, geo.blocks}, base_weight.options());
  at::Tensor counter = at::empty({1}, base_weight.options().dtype(at::kInt));
  device.memset(counter.mutable_data_ptr(), 0, sizeof(unsigned));
  device.launch(
      kan_conv2d_backward_kernel<scalar_t, opmath_t, Basis, kStride, strip_of<kStride>()>,
      dim3(static_cast<unsigned>(geo.blocks)), dim3(kThreadsPerBlock), geo.smem_bytes,
      grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
      base_weight.const_data_ptr<opmath_t>(), poly_weight.const_data_ptr<opmath_t>(),
      grad_x.mutable_data_ptr<scalar_t>(), grad_base_weight.mutable_data_ptr<opmath_t>(),
      grad_poly_weight.mutable_data_ptr<opmath_t>(), partials.mutable_data_ptr<opmath_t>(),
      static_cast<unsigned*>(counter.mutable_data_ptr()), geo, basis);
}

// Calls body(basis, std::integral_constant<int, stride>()) with the instantiation that runs
// (basis, K, stride) for scalar_t: a ChebyshevBasis specialisation for the defaults, else
// RuntimeBasis.
template <typename scalar_t, typename Body>
void dispatch_kan_conv2d(int64_t basis, int64_t num_functions, int64_t stride, Body&& body) {
  TORCH_CHECK(num_functions >= 1 && num_functions <= kMaxFunctions,
              "kan_conv2d: the CUDA kernels support 1 to ", kMaxFunctions,
              " basis functions (poly_weight.size(1), Chebyshev degree + 1), got ", num_functions);
  auto with_stride = [&](const auto& family) {
    if (stride == 1) {
      body(family, std::integral_constant<int, 1>());
    } else {
      body(family, std::integral_constant<int, 2>());
    }
  };
  if constexpr (!std::is_same<scalar_t, double>::value) {
    if (basis == kChebyshev && num_functions == 4) return with_stride(ChebyshevBasis<4>());
    if (basis == kChebyshev && num_functions == 3) return with_stride(ChebyshevBasis<3>());
  }
  with_stride(RuntimeBasis{static_cast<int>(basis), static_cast<int>(num_functions)});
}

template <typename Device>
at::Tensor kan_conv2d_forward(const Device& device, const at::Tensor& x,
                              const at::Tensor& base_weight, const at::Tensor& poly_weight,
                              int64_t stride, int64_t basis) {
  at::Tensor y = at::empty({x.size(0), x.size(1), kan_conv2d_output_size(x.size(2), stride),
                            kan_conv2d_output_size(x.size(3), stride)},
                           x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_forward_cuda", [&] {
    dispatch_kan_conv2d<scalar_t>(
        basis, poly_weight.size(1), stride, [&](const auto& family, auto kernel_stride) {
          launch_kan_conv2d_forward<scalar_t, std::decay_t<decltype(family)>,
                                    decltype(kernel_stride)::value>(device, x, base_weight,
                                                                    poly_weight, family, y);
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
  at::Tensor grad_base_weight = at::empty_like(base_weight);
  at::Tensor grad_poly_weight = at::empty_like(poly_weight);
  if (grad_out.numel() == 0) {
    grad_base_weight.zero_();
    grad_poly_weight.zero_();
    return {grad_x, grad_base_weight, grad_poly_weight};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_backward_cuda", [&] {
    dispatch_kan_conv2d<scalar_t>(
        basis, poly_weight.size(1), stride, [&](const auto& family, auto kernel_stride) {
          launch_kan_conv2d_backward<scalar_t, std::decay_t<decltype(family)>,
                                     decltype(kernel_stride)::value>(
              device, grad_out, x, base_weight, poly_weight, family, grad_x, grad_base_weight,
              grad_poly_weight);
        });
  });
  return {grad_x, grad_base_weight, grad_poly_weight};
}

}  // namespace cuda
}  // namespace mmrkan
