// Host side of the kan_conv2d CUDA kernels: geometry, dispatch to the kernel instantiations,
// launch plan and launches (the backward, with its weight-gradient reduction, is one kernel
// launch plus a 4-byte memset of its completion counter). Templated on the device that runs the
// kernels, see kan_launch_utils.h. The caller has checked the arguments (check_kan_conv2d_args)
// and set the current device.
//
// Instantiations (docs/ops.md, "Adding a basis family or a rational order"): what the RKAN
// defaults run is specialised (ChebyshevBasis<3> and <4>, strides 1 and 2, fp32/bf16/fp16: 12 per
// direction); every other family, K, pixelwise normalisation, base activation (and fp64) runs
// RuntimeBasis (4 dtypes x 2 strides per direction); the per-window normalisations run the
// per-output kernels (4 dtypes per direction, stride at run time).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>

#include "../common/cuda/kan_conv2d_kernel.cuh"
#include "../kan_ops.h"
#include "kan_launch_utils.h"

namespace mmrkan {
namespace cuda {

static_assert(kNumTaps == ::mmrkan::kNumTaps, "the kernels' window must match kan_ops.h");
static_assert(kChebyshev == static_cast<int>(KanBasis::kChebyshev) &&
                  kRbf == static_cast<int>(KanBasis::kRbf) &&
                  kLegendre == static_cast<int>(KanBasis::kLegendre) &&
                  kJacobi == static_cast<int>(KanBasis::kJacobi) &&
                  kHermite == static_cast<int>(KanBasis::kHermite) &&
                  kBSpline == static_cast<int>(KanBasis::kBSpline),
              "the kernels' basis codes must match kan_ops.h");
static_assert(kNormalizeNone == static_cast<int>(KanNormalization::kNone) &&
                  kNormalizeTanh == static_cast<int>(KanNormalization::kTanh) &&
                  kNormalizeArctan == static_cast<int>(KanNormalization::kArctan) &&
                  kNormalizeMinMax == static_cast<int>(KanNormalization::kMinMax) &&
                  kNormalizeStandardization ==
                      static_cast<int>(KanNormalization::kStandardization),
              "the kernels' normalisation codes must match kan_ops.h");
static_assert(kActivationIdentity == static_cast<int>(KanBaseActivation::kIdentity) &&
                  kActivationSilu == static_cast<int>(KanBaseActivation::kSilu),
              "the kernels' base activation codes must match kan_ops.h");
static_assert(kMaxSplineOrder == ::mmrkan::kMaxSplineOrder,
              "the kernels' B-spline orders must match kan_ops.h");

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

// The family's run-time parameters, as the CPU kernel computes them (csrc/cpu/kan_conv2d_cpu.cpp,
// Basis): recurrence coefficients of the polynomial families, the rbf grid, the B-spline knots.
template <typename T>
BasisFamily<T> make_basis_family(int64_t basis, int64_t num_functions,
                                 at::ArrayRef<double> params) {
  BasisFamily<T> family{};
  family.family = static_cast<int>(basis);
  family.num_functions = static_cast<int>(num_functions);
  if (family.polynomial()) {
    const double alpha = basis == kJacobi ? params[0] : 0.0;
    const double beta = basis == kJacobi ? params[1] : 0.0;
    for (int n = 1; n < num_functions; ++n) {
      double an = 1, bn = 0, cn = 0;
      switch (basis) {
        case kChebyshev:
          an = n == 1 ? 1 : 2;
          cn = n == 1 ? 0 : 1;
          break;
        case kLegendre:
          an = (2.0 * n - 1) / n;
          cn = (n - 1.0) / n;
          break;
        case kHermite:
          an = 2;
          cn = 2.0 * (n - 1);
          break;
        default: {  // Jacobi
          if (n == 1) {
            an = (alpha + beta + 2) / 2;
            bn = (alpha - beta) / 2;
            break;
          }
          const double s = 2.0 * n + alpha + beta;
          const double denominator = 2.0 * n * (n + alpha + beta) * (s - 2);
          an = (s - 1) * s * (s - 2) / denominator;
          bn = (s - 1) * (alpha * alpha - beta * beta) / denominator;
          cn = 2 * (n + alpha - 1) * (n + beta - 1) * s / denominator;
        }
      }
      family.a[n] = static_cast<T>(an);
      family.b[n] = static_cast<T>(bn);
      family.c[n] = static_cast<T>(cn);
    }
  } else if (basis == kRbf) {
    family.low = static_cast<T>(params[0]);
    family.step = static_cast<T>((params[1] - params[0]) / (num_functions - 1));
    family.inv_width = static_cast<T>((num_functions - 1) / (params[1] - params[0]));
  } else {
    family.spline_order = static_cast<int>(params[2]);
    const int64_t grid_size = num_functions - family.spline_order;
    const double h = (params[1] - params[0]) / grid_size;
    family.first_knot = static_cast<T>(params[0] - family.spline_order * h);
    family.inv_h = static_cast<T>(1 / h);
    const int64_t num_cells = grid_size + 2 * family.spline_order;
    family.cell_middle = static_cast<T>(num_cells / 2.0);
    family.cell_radius = static_cast<T>(num_cells / 2.0 + 1);
  }
  return family;
}

// The op's options, as the kernels take them.
struct ConvOptions {
  int64_t stride, basis, normalization, base_activation;
  at::ArrayRef<double> basis_params;
};

// What the CUDA kernels do not run (an empty string if they run it); kan_conv.py routes the same
// cases to the PyTorch reference (cuda_kernels_unsupported there).
inline std::string unsupported_by_kernels(int64_t num_functions) {
  if (num_functions > kMaxFunctions) {
    return "K=" + std::to_string(num_functions) + " basis functions (poly_weight.size(1)); they " +
           "support 1 to " + std::to_string(kMaxFunctions);
  }
  return "";
}

inline void check_supported(const ConvOptions& options, int64_t num_functions) {
  const std::string unsupported = unsupported_by_kernels(num_functions);
  TORCH_CHECK(unsupported.empty(), "kan_conv2d: the CUDA kernels do not support ", unsupported,
              " (basis=", options.basis, ", normalization=", options.normalization, ")");
}

inline bool per_window(const ConvOptions& options) {
  return options.normalization != kNormalizeNone && options.normalization != kNormalizeTanh;
}

template <typename opmath_t>
WindowBasis<opmath_t> make_window_basis(const ConvOptions& options, int64_t num_functions) {
  return WindowBasis<opmath_t>{
      make_basis_family<opmath_t>(options.basis, num_functions, options.basis_params),
      static_cast<int>(options.normalization), options.base_activation == kActivationSilu,
      static_cast<int>(options.stride)};
}

template <typename scalar_t, typename Device>
void launch_kan_conv2d_window_forward(const Device& device, const at::Tensor& x,
                                      const at::Tensor& base_weight,
                                      const at::Tensor& poly_weight,
                                      const at::Tensor& norm_scale, const ConvOptions& options,
                                      at::Tensor& y) {
  using opmath_t = at::opmath_type<scalar_t>;
  const WindowPlan plan = make_window_plan(x.size(0) * x.size(1), static_cast<int>(x.size(2)),
                                           static_cast<int>(x.size(3)),
                                           static_cast<int>(options.stride), false);
  device.launch(kan_conv2d_window_forward_kernel<scalar_t, opmath_t>,
                dim3(static_cast<unsigned>(plan.blocks)), dim3(kThreadsPerBlock), 0,
                x.const_data_ptr<scalar_t>(), base_weight.const_data_ptr<opmath_t>(),
                poly_weight.const_data_ptr<opmath_t>(), norm_scale.const_data_ptr<opmath_t>(),
                y.mutable_data_ptr<scalar_t>(), plan,
                make_window_basis<opmath_t>(options, poly_weight.size(1)));
}

template <typename scalar_t, typename Device>
void launch_kan_conv2d_window_backward(const Device& device, const at::Tensor& grad_out,
                                       const at::Tensor& x, const at::Tensor& base_weight,
                                       const at::Tensor& poly_weight,
                                       const at::Tensor& norm_scale, const ConvOptions& options,
                                       at::Tensor& grad_x, at::Tensor& grad_base_weight,
                                       at::Tensor& grad_poly_weight,
                                       at::Tensor& grad_norm_scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const WindowPlan plan = make_window_plan(x.size(0) * x.size(1), static_cast<int>(x.size(2)),
                                           static_cast<int>(x.size(3)),
                                           static_cast<int>(options.stride), true);
  at::Tensor partials = at::empty({kWindowSums, plan.blocks}, base_weight.options());
  at::Tensor counter = at::empty({1}, base_weight.options().dtype(at::kInt));
  device.memset(counter.mutable_data_ptr(), 0, sizeof(unsigned));
  device.launch(kan_conv2d_window_backward_kernel<scalar_t, opmath_t>,
                dim3(static_cast<unsigned>(plan.blocks)), dim3(kThreadsPerBlock), 0,
                grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                base_weight.const_data_ptr<opmath_t>(), poly_weight.const_data_ptr<opmath_t>(),
                norm_scale.const_data_ptr<opmath_t>(), grad_x.mutable_data_ptr<scalar_t>(),
                grad_base_weight.mutable_data_ptr<opmath_t>(),
                grad_poly_weight.mutable_data_ptr<opmath_t>(),
                grad_norm_scale.mutable_data_ptr<opmath_t>(), partials.mutable_data_ptr<opmath_t>(),
                static_cast<unsigned*>(counter.mutable_data_ptr()), plan,
                make_window_basis<opmath_t>(options, poly_weight.size(1)));
}

// Calls body(basis, std::integral_constant<int, stride>()) with the instantiation that runs the
// options for scalar_t: a ChebyshevBasis specialisation for the defaults (tanh, identity base),
// else RuntimeBasis. Raises for what the kernels do not support.
template <typename scalar_t, typename Body>
void dispatch_kan_conv2d(const ConvOptions& options, int64_t num_functions, Body&& body) {
  using opmath_t = at::opmath_type<scalar_t>;
  check_supported(options, num_functions);
  TORCH_CHECK(!per_window(options), "kan_conv2d: normalization=", options.normalization,
              " runs the per-window kernels, which have no window plan");
  auto with_stride = [&](const auto& family) {
    if (options.stride == 1) {
      body(family, std::integral_constant<int, 1>());
    } else {
      body(family, std::integral_constant<int, 2>());
    }
  };
  if constexpr (!std::is_same<scalar_t, double>::value) {
    if (options.basis == kChebyshev && options.normalization == kNormalizeTanh &&
        options.base_activation == kActivationIdentity) {
      if (num_functions == 4) return with_stride(ChebyshevBasis<4>());
      if (num_functions == 3) return with_stride(ChebyshevBasis<3>());
    }
  }
  with_stride(RuntimeBasis<opmath_t>{
      make_basis_family<opmath_t>(options.basis, num_functions, options.basis_params),
      options.normalization == kNormalizeTanh, options.base_activation == kActivationSilu});
}

template <typename Device>
at::Tensor kan_conv2d_forward(const Device& device, const at::Tensor& x,
                              const at::Tensor& base_weight, const at::Tensor& poly_weight,
                              const at::Tensor& norm_scale, const ConvOptions& options) {
  check_supported(options, poly_weight.size(1));
  at::Tensor y = at::empty({x.size(0), x.size(1), kan_conv2d_output_size(x.size(2), options.stride),
                            kan_conv2d_output_size(x.size(3), options.stride)},
                           x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_forward_cuda", [&] {
    if (per_window(options)) {
      launch_kan_conv2d_window_forward<scalar_t>(device, x, base_weight, poly_weight, norm_scale,
                                                 options, y);
      return;
    }
    dispatch_kan_conv2d<scalar_t>(
        options, poly_weight.size(1), [&](const auto& family, auto kernel_stride) {
          launch_kan_conv2d_forward<scalar_t, std::decay_t<decltype(family)>,
                                    decltype(kernel_stride)::value>(device, x, base_weight,
                                                                    poly_weight, family, y);
        });
  });
  return y;
}

// Returns (grad_x, grad_base_weight, grad_poly_weight, grad_norm_scale).
template <typename Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward(
    const Device& device, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& base_weight, const at::Tensor& poly_weight, const at::Tensor& norm_scale,
    const ConvOptions& options) {
  check_supported(options, poly_weight.size(1));
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_base_weight = at::empty_like(base_weight);
  at::Tensor grad_poly_weight = at::empty_like(poly_weight);
  // Only arctan's scale has a gradient (the per-window kernel writes it).
  at::Tensor grad_norm_scale = at::zeros_like(norm_scale);
  if (grad_out.numel() == 0) {
    grad_base_weight.zero_();
    grad_poly_weight.zero_();
    return {grad_x, grad_base_weight, grad_poly_weight, grad_norm_scale};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_backward_cuda", [&] {
    if (per_window(options)) {
      launch_kan_conv2d_window_backward<scalar_t>(device, grad_out, x, base_weight, poly_weight,
                                                  norm_scale, options, grad_x, grad_base_weight,
                                                  grad_poly_weight, grad_norm_scale);
      return;
    }
    dispatch_kan_conv2d<scalar_t>(
        options, poly_weight.size(1), [&](const auto& family, auto kernel_stride) {
          launch_kan_conv2d_backward<scalar_t, std::decay_t<decltype(family)>,
                                     decltype(kernel_stride)::value>(
              device, grad_out, x, base_weight, poly_weight, family, grad_x, grad_base_weight,
              grad_poly_weight);
        });
  });
  return {grad_x, grad_base_weight, grad_poly_weight, grad_norm_scale};
}

}  // namespace cuda
}  // namespace mmrkan
