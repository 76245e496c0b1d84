// Shared declarations of mmrkan's KAN ops (schemas are defined in kan_ops.cpp).
//
// Every device implementation (csrc/cpu, csrc/cuda) registers the four ops below with
// TORCH_LIBRARY_IMPL(mmrkan, <Device>, m). Conventions shared by all implementations:
//   * x is contiguous and may be fp64/fp32/fp16/bf16; outputs and grad_x keep x's dtype.
//   * coefficients/weights are fp32 (fp64 when x is fp64), on x's device; their gradients keep
//     that dtype. check_*_args below enforce these rules and the shapes.
//   * arithmetic is fp32 (fp64 for fp64 x) whatever the storage dtype of x.
//   * coefficient/weight gradients are reduced per thread/block and combined in a fixed order,
//     so results are deterministic.
#pragma once

#include <ATen/core/Tensor.h>

namespace mmrkan {

// group_rational: rational orders (m, n), read from the coefficient shapes (numerator (., m + 1),
// denominator (g, n)); (5, 4) is KAT's. The orders every kernel (CPU and CUDA) supports:
constexpr int64_t kRationalOrders[][2] = {{3, 2}, {5, 4}, {7, 6}};

// kan_conv2d_forward/backward arguments (docs/ops.md, "KAN convolution"; the Python names in
// mmrkan/ops/kan_conv_options.py).
// `basis`: the family of the K = poly_weight.size(1) basis functions B_k(t).
enum class KanBasis : int64_t {
  kChebyshev = 0,  // T_k, basis_params = []
  kRbf = 1,        // Gaussian bumps, basis_params = [grid_min, grid_max], K >= 2
  kLegendre = 2,   // P_k, basis_params = []
  kJacobi = 3,     // P_k^(alpha, beta), basis_params = [alpha, beta], alpha, beta > -1
  kHermite = 4,    // physicists' H_k, basis_params = []
  kBSpline = 5,    // basis_params = [grid_min, grid_max, spline_order k]: K = grid_size + k
};
// `normalization`: t = normalize(x), of one value (none, tanh) or with the statistics of the 9
// taps of the window (arctan, min-max, standardization).
enum class KanNormalization : int64_t {
  kNone = 0,             // t = x
  kTanh = 1,             // t = tanh(x)
  kArctan = 2,           // t = (2 / pi) atan((x - mean) s), s = norm_scale[0]
  kMinMax = 3,           // t = 2 (x - min) / (max - min + eps) - 1
  kStandardization = 4,  // t = (x - mean) / (std + eps), std Bessel-corrected
};
// `base_activation`: the function of x in the base term sum_p base_weight[p] act(x_p).
enum class KanBaseActivation : int64_t { kIdentity = 0, kSilu = 1 };
constexpr double kNormalizationEps = 1e-8;
constexpr int64_t kMaxSplineOrder = 5;

// 3x3 window, zero padding 1.
constexpr int64_t kKernelSize = 3;
constexpr int64_t kNumTaps = kKernelSize * kKernelSize;
constexpr int64_t kPadding = 1;

// CPU kernels: functions holding hot loops are compiled for baseline x86-64 and for x86-64-v3
// (AVX2), and the loader picks the version the CPU supports (GCC on x86-64 Linux; elsewhere a
// single baseline version).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MMRKAN_CPU_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MMRKAN_CPU_MULTIVERSION
#endif

inline int64_t kan_conv2d_output_size(int64_t size, int64_t stride) {
  return (size + 2 * kPadding - kKernelSize) / stride + 1;
}

// Argument checks shared by every device implementation (throw c10::Error with a clear message).
void check_group_rational_args(const at::Tensor& x, const at::Tensor& numerator,
                               const at::Tensor& denominator);
void check_kan_conv2d_args(const at::Tensor& x, const at::Tensor& base_weight,
                           const at::Tensor& poly_weight, const at::Tensor& norm_scale,
                           int64_t stride, int64_t basis, int64_t normalization,
                           int64_t base_activation, at::ArrayRef<double> basis_params);
// grad_out of a backward op: contiguous, on x's device, in x's dtype, of the forward output size.
void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    at::IntArrayRef output_sizes);

}  // namespace mmrkan
