// CUDA kernels of KAT's group-rational activation (docs/ops.md).
//
//   F(x) = P(x) / Q(x),  P = a0 + a1 x + ... + a5 x^5,  Q = 1 + |b1||x| + ... + |b4||x|^4
//
// x is viewed as (rows, C). Each thread owns one column of kVec consecutive channels (one 16-byte
// access when the group size and the pointers allow it, else one channel) and walks down the rows
// with a grid stride. A column never changes group, so a thread loads its group's coefficients
// into registers once and, in the backward, sums its coefficient gradients in registers: the
// per-element work is one read of x (and grad_out) and one write.
// The coefficient gradients are summed over threadIdx.y per block in a fixed order, written as
// one partial per (block row, column), then reduce_partials_kernel adds them up per group: no
// atomics, deterministic. Launch plans: kan_launch_plan.h.
#pragma once

#include <cstdint>

#include "kan_common_kernel.cuh"
#include "kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

// Gradient partial sums per column: d/da_0..a_5, then d/db_1..b_4.
constexpr int kNumCoeffs = kNumNumerator + kNumDenominator;

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
    const Vec in = load_pack<Vec>(x + offset);
    Vec out;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      out.val[v] = static_cast<scalar_t>(rational(coeffs, static_cast<opmath_t>(in.val[v])));
    }
    store_pack(y + offset, out);
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
  MMRKAN_SHARED_ARRAY(opmath_t, block_sums, [kThreadsPerBlock][kNumCoeffs]);
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = column < layout.columns;
  opmath_t acc[kNumCoeffs] = {};
  if (active) {
    const RationalCoeffs<opmath_t> coeffs = load_coeffs(numerator, denominator, layout, column);
    const int64_t row_step = static_cast<int64_t>(gridDim.y) * blockDim.y;
    for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
         row < layout.rows; row += row_step) {
      const int64_t offset = row * layout.channels + column * kVec;
      const Vec in = load_pack<Vec>(x + offset);
      const Vec dy = load_pack<Vec>(grad_out + offset);
      Vec dx;
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        dx.val[v] = static_cast<scalar_t>(rational_backward(
            coeffs, static_cast<opmath_t>(in.val[v]), static_cast<opmath_t>(dy.val[v]), acc));
      }
      store_pack(grad_x + offset, dx);
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

}  // namespace cuda
}  // namespace mmrkan
