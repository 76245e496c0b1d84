// CUDA kernels of KAT's group-rational activation (kan-facts.md section 1).
//
//   F(x) = P(x) / Q(x),  P = a0 + a1 x + ... + a5 x^5,  Q = 1 + |b1||x| + ... + |b4||x|^4
//
// x is viewed as (rows, C). Each thread owns one column of kVec consecutive channels (one 16-byte
// access when the group size and the pointers allow it, else one channel) and walks down the rows
// with a grid stride. A column never changes group, so a thread loads its group's coefficients
// into registers once and, in the backward, sums its coefficient gradients in registers: the
// per-element work is one read of x (and grad_out) and one write.
// The coefficient gradients are summed over threadIdx.y per block in a fixed order, written as
// one partial per (block row, column), then reduce_partials adds them up per group: no atomics,
// deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <tuple>

#include "../kan_ops.h"
#include "kan_cuda_utils.cuh"

namespace mmrkan {
namespace {

using cuda::kThreadsPerBlock;
using cuda::kVectorBytes;
using cuda::Pack;

// Gradient partial sums per column: d/da_0..a_5, then d/db_1..b_4.
constexpr int kNumCoeffs = kNumNumerator + kNumDenominator;

struct RationalLayout {
  int64_t rows;            // x.numel() / C
  int64_t channels;        // C
  int64_t columns;         // C / kVec: one per thread column
  int64_t group_columns;   // (C / g) / kVec: columns per group
  bool shared_numerator;   // numerator (1, 6) instead of (g, 6)
};

template <typename T>
struct RationalCoeffs {
  T a[kNumNumerator];
  T abs_b[kNumDenominator];
  T sign_b[kNumDenominator];  // s(b_k), s(0) = +1
};

template <typename T>
__device__ __forceinline__ T sign_with_positive_zero(T v) {
  return v >= T(0) ? T(1) : T(-1);
}

template <typename T>
__device__ __forceinline__ RationalCoeffs<T> load_coeffs(const T* __restrict__ numerator,
                                                         const T* __restrict__ denominator,
                                                         const RationalLayout& layout,
                                                         int64_t column) {
  const int64_t group = column / layout.group_columns;
  const T* a = numerator + (layout.shared_numerator ? 0 : group * kNumNumerator);
  const T* b = denominator + group * kNumDenominator;
  RationalCoeffs<T> coeffs;
#pragma unroll
  for (int k = 0; k < kNumNumerator; ++k) coeffs.a[k] = a[k];
#pragma unroll
  for (int k = 0; k < kNumDenominator; ++k) {
    coeffs.sign_b[k] = sign_with_positive_zero(b[k]);
    coeffs.abs_b[k] = coeffs.sign_b[k] * b[k];
  }
  return coeffs;
}

template <typename T>
__device__ __forceinline__ T rational(const RationalCoeffs<T>& c, T x) {
  const T abs_x = sign_with_positive_zero(x) * x;
  T p = c.a[5];
#pragma unroll
  for (int k = 4; k >= 0; --k) p = p * x + c.a[k];
  T q = c.abs_b[3];
#pragma unroll
  for (int k = 2; k >= 0; --k) q = q * abs_x + c.abs_b[k];
  return p / (q * abs_x + T(1));
}

// Returns dy * dF/dx and adds dy * dF/da_k, dy * dF/db_k / s(b_k) to acc (s(b_k) is applied once
// per thread at the end).
template <typename T>
__device__ __forceinline__ T rational_backward(const RationalCoeffs<T>& c, T x, T dy,
                                               T (&acc)[kNumCoeffs]) {
  const T sign_x = sign_with_positive_zero(x);
  const T abs_x = sign_x * x;
  const T x2 = x * x;
  const T x3 = x2 * x;
  const T x4 = x2 * x2;
  const T x5 = x4 * x;
  const T abs_x3 = abs_x * x2;
  const T p = c.a[0] + c.a[1] * x + c.a[2] * x2 + c.a[3] * x3 + c.a[4] * x4 + c.a[5] * x5;
  const T q = T(1) + c.abs_b[0] * abs_x + c.abs_b[1] * x2 + c.abs_b[2] * abs_x3 + c.abs_b[3] * x4;
  const T dp = c.a[1] + T(2) * c.a[2] * x + T(3) * c.a[3] * x2 + T(4) * c.a[4] * x3 +
               T(5) * c.a[5] * x4;
  const T dq = sign_x * (c.abs_b[0] + T(2) * c.abs_b[1] * abs_x + T(3) * c.abs_b[2] * x2 +
                         T(4) * c.abs_b[3] * abs_x3);
  const T inv_q = T(1) / q;
  const T f = p * inv_q;
  // P/Q^2 as F/Q: Q^2 can overflow fp32 where F/Q does not.
  const T dy_over_q = dy * inv_q;
  const T dy_f_over_q = dy_over_q * f;
  acc[0] += dy_over_q;
  acc[1] += dy_over_q * x;
  acc[2] += dy_over_q * x2;
  acc[3] += dy_over_q * x3;
  acc[4] += dy_over_q * x4;
  acc[5] += dy_over_q * x5;
  acc[6] -= dy_f_over_q * abs_x;
  acc[7] -= dy_f_over_q * x2;
  acc[8] -= dy_f_over_q * abs_x3;
  acc[9] -= dy_f_over_q * x4;
  // dF/dx = R/Q - S P/Q^2 = (R - S F) / Q
  return dy_over_q * (dp - dq * f);
}

template <typename scalar_t, typename opmath_t, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock)
    group_rational_forward_kernel(const scalar_t* __restrict__ x,
                                  const opmath_t* __restrict__ numerator,
                                  const opmath_t* __restrict__ denominator,
                                  scalar_t* __restrict__ y, RationalLayout layout) {
  using Vec = Pack<scalar_t, kVec>;
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (column >= layout.columns) return;
  const RationalCoeffs<opmath_t> coeffs = load_coeffs(numerator, denominator, layout, column);
  const int64_t row_step = static_cast<int64_t>(gridDim.y) * blockDim.y;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
       row < layout.rows; row += row_step) {
    const int64_t offset = row * layout.channels + column * kVec;
    const Vec in = *reinterpret_cast<const Vec*>(x + offset);
    Vec out;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      out.val[v] = static_cast<scalar_t>(rational(coeffs, static_cast<opmath_t>(in.val[v])));
    }
    *reinterpret_cast<Vec*>(y + offset) = out;
  }
}

// partials: (gridDim.y, layout.columns, kNumCoeffs), one row per block row.
template <typename scalar_t, typename opmath_t, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock)
    group_rational_backward_kernel(const scalar_t* __restrict__ grad_out,
                                   const scalar_t* __restrict__ x,
                                   const opmath_t* __restrict__ numerator,
                                   const opmath_t* __restrict__ denominator,
                                   scalar_t* __restrict__ grad_x, opmath_t* __restrict__ partials,
                                   RationalLayout layout) {
  using Vec = Pack<scalar_t, kVec>;
  __shared__ opmath_t block_sums[kThreadsPerBlock][kNumCoeffs];
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = column < layout.columns;
  opmath_t acc[kNumCoeffs] = {};
  if (active) {
    const RationalCoeffs<opmath_t> coeffs = load_coeffs(numerator, denominator, layout, column);
    const int64_t row_step = static_cast<int64_t>(gridDim.y) * blockDim.y;
    for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
         row < layout.rows; row += row_step) {
      const int64_t offset = row * layout.channels + column * kVec;
      const Vec in = *reinterpret_cast<const Vec*>(x + offset);
      const Vec dy = *reinterpret_cast<const Vec*>(grad_out + offset);
      Vec dx;
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        dx.val[v] = static_cast<scalar_t>(rational_backward(
            coeffs, static_cast<opmath_t>(in.val[v]), static_cast<opmath_t>(dy.val[v]), acc));
      }
      *reinterpret_cast<Vec*>(grad_x + offset) = dx;
    }
#pragma unroll
    for (int k = 0; k < kNumDenominator; ++k) acc[kNumNumerator + k] *= coeffs.sign_b[k];
  }

  // Fixed-order tree over threadIdx.y (blockDim.y is a power of two).
  const int slot = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kNumCoeffs; ++k) block_sums[slot][k] = acc[k];
  __syncthreads();
  for (int half = blockDim.y / 2; half > 0; half /= 2) {
    if (threadIdx.y < half) {
#pragma unroll
      for (int k = 0; k < kNumCoeffs; ++k) {
        block_sums[slot][k] += block_sums[slot + half * blockDim.x][k];
      }
    }
    __syncthreads();
  }
  if (threadIdx.y == 0 && active) {
    opmath_t* out = partials + (blockIdx.y * layout.columns + column) * kNumCoeffs;
#pragma unroll
    for (int k = 0; k < kNumCoeffs; ++k) out[k] = block_sums[threadIdx.x][k];
  }
}

// Threads per block along the columns: a warp spans 32 columns, or whole rows when C is narrow
// (rows are contiguous, so the warp's accesses stay contiguous either way).
struct LaunchShape {
  dim3 block;
  dim3 grid;
};

template <typename Kernel>
LaunchShape launch_shape(Kernel kernel, const RationalLayout& layout) {
  int block_x = 1;
  while (block_x < cuda::kWarpSize && block_x < layout.columns) block_x *= 2;
  const int block_y = kThreadsPerBlock / block_x;
  const int64_t grid_x = (layout.columns + block_x - 1) / block_x;
  const int64_t wanted_y = (layout.rows + block_y - 1) / block_y;
  const int64_t resident_y =
      std::max<int64_t>(1, cuda::resident_blocks(kernel, kThreadsPerBlock, 0) / grid_x);
  const int64_t grid_y = std::min<int64_t>({wanted_y, resident_y, 65535});
  TORCH_CHECK(grid_x <= std::numeric_limits<int32_t>::max(),
              "group_rational: too many channels for the CUDA kernel: ", layout.channels);
  return {dim3(block_x, block_y), dim3(static_cast<unsigned>(grid_x),
                                       static_cast<unsigned>(grid_y))};
}

RationalLayout make_layout(const at::Tensor& x, const at::Tensor& numerator,
                           const at::Tensor& denominator, int vec) {
  const int64_t channels = x.size(-1);
  const int64_t groups = denominator.size(0);
  RationalLayout layout;
  layout.rows = x.numel() / channels;
  layout.channels = channels;
  layout.columns = channels / vec;
  layout.group_columns = channels / groups / vec;
  layout.shared_numerator = numerator.size(0) == 1;
  return layout;
}

// 16-byte accesses need each group's width to be a multiple of the vector (a vector never
// straddles two groups, rows stay aligned) and 16-byte aligned pointers.
bool can_vectorize(const at::Tensor& x, const at::Tensor& denominator,
                   std::initializer_list<const void*> pointers) {
  const int64_t vec = kVectorBytes / x.element_size();
  if ((x.size(-1) / denominator.size(0)) % vec != 0) return false;
  for (const void* ptr : pointers) {
    if (!cuda::is_aligned(ptr, kVectorBytes)) return false;
  }
  return true;
}

template <typename scalar_t, int kVec>
void launch_forward(const at::Tensor& x, const at::Tensor& numerator,
                    const at::Tensor& denominator, at::Tensor& y) {
  using opmath_t = at::opmath_type<scalar_t>;
  const RationalLayout layout = make_layout(x, numerator, denominator, kVec);
  const auto kernel = group_rational_forward_kernel<scalar_t, opmath_t, kVec>;
  const LaunchShape shape = launch_shape(kernel, layout);
  kernel<<<shape.grid, shape.block, 0, at::cuda::getCurrentCUDAStream()>>>(
      x.const_data_ptr<scalar_t>(), numerator.const_data_ptr<opmath_t>(),
      denominator.const_data_ptr<opmath_t>(), y.mutable_data_ptr<scalar_t>(), layout);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int kVec>
void launch_backward(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& numerator, const at::Tensor& denominator,
                     at::Tensor& grad_x, at::Tensor& grad_numerator,
                     at::Tensor& grad_denominator) {
  using opmath_t = at::opmath_type<scalar_t>;
  const RationalLayout layout = make_layout(x, numerator, denominator, kVec);
  const auto kernel = group_rational_backward_kernel<scalar_t, opmath_t, kVec>;
  const LaunchShape shape = launch_shape(kernel, layout);
  const auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor partials =
      at::empty({static_cast<int64_t>(shape.grid.y), layout.columns, kNumCoeffs},
                numerator.options());
  kernel<<<shape.grid, shape.block, 0, stream>>>(
      grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
      numerator.const_data_ptr<opmath_t>(), denominator.const_data_ptr<opmath_t>(),
      grad_x.mutable_data_ptr<scalar_t>(), partials.mutable_data_ptr<opmath_t>(), layout);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const int64_t groups = denominator.size(0);
  const int64_t numerator_rows = numerator.size(0);
  cuda::reduce_partials(partials.const_data_ptr<opmath_t>(), shape.grid.y, layout.columns,
                        kNumCoeffs, numerator_rows, layout.columns / numerator_rows, 0,
                        kNumNumerator, grad_numerator.mutable_data_ptr<opmath_t>(), stream);
  cuda::reduce_partials(partials.const_data_ptr<opmath_t>(), shape.grid.y, layout.columns,
                        kNumCoeffs, groups, layout.group_columns, kNumNumerator, kNumDenominator,
                        grad_denominator.mutable_data_ptr<opmath_t>(), stream);
}

at::Tensor group_rational_forward_cuda(const at::Tensor& x, const at::Tensor& numerator,
                                       const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "group_rational_forward_cuda", [&] {
    constexpr int kVec = kVectorBytes / sizeof(scalar_t);
    if (can_vectorize(x, denominator, {x.const_data_ptr(), y.const_data_ptr()})) {
      launch_forward<scalar_t, kVec>(x, numerator, denominator, y);
    } else {
      launch_forward<scalar_t, 1>(x, numerator, denominator, y);
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  check_grad_out("group_rational_backward", grad_out, x, x.sizes());
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
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
    if (can_vectorize(x, denominator, {x.const_data_ptr(), grad_out.const_data_ptr(),
                                       grad_x.const_data_ptr()})) {
      launch_backward<scalar_t, kVec>(grad_out, x, numerator, denominator, grad_x,
                                      grad_numerator, grad_denominator);
    } else {
      launch_backward<scalar_t, 1>(grad_out, x, numerator, denominator, grad_x, grad_numerator,
                                   grad_denominator);
    }
  });
  return {grad_x, grad_numerator, grad_denominator};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CUDA, m) {
  m.impl("group_rational_forward", &group_rational_forward_cuda);
  m.impl("group_rational_backward", &group_rational_backward_cuda);
}

}  // namespace mmrkan
