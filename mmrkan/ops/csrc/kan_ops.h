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

// Numerator degree m = 5 (6 coefficients) and denominator degree n = 4 (b1..b4).
constexpr int64_t kNumNumerator = 6;
constexpr int64_t kNumDenominator = 4;

// Value of the `basis` argument of kan_conv2d_forward/backward.
enum class KanBasis : int64_t { kChebyshev = 0, kRbf = 1 };

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
                           const at::Tensor& poly_weight, int64_t stride, int64_t basis);
// grad_out of a backward op: contiguous, on x's device, in x's dtype, of the forward output size.
void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    at::IntArrayRef output_sizes);

}  // namespace mmrkan
