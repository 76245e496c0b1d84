// CUDA kernels of KAT's group-rational activation (docs/ops.md).
//
//   F(x) = P(x) / Q(x),  P = a0 + a1 x + ... + am x^m,  Q = 1 + |b1||x| + ... + |bn||x|^n
//
// The orders (m, n) are the template parameter Order: RationalOrder<3, 2>, <5, 4> (every KAT
// model) and <7, 6> (the KAT paper's order ablation), instantiated by the launcher. x is viewed
// as (rows, C); a block works on one group's columns (kan_launch_plan.h: plan_group_rational),
// so each thread loads that group's coefficients into registers once and, in the backward, sums
// its coefficient gradients in registers. The backward is one launch: the block's sums (warp
// butterflies, then the warps in order) go to one partial per block and coefficient, and the
// block that finishes last adds the partials up in a fixed order (arrive_last): no atomics on
// the values, the same bits on every GPU.
#pragma once

#include <cstdint>

#include "kan_common_kernel.cuh"
#include "kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

// Numerator degree m (a0..am) and denominator degree n (b1..bn).
template <int kNumeratorDegree, int kDenominatorDegree>
struct RationalOrder {
  static constexpr int kNumerator = kNumeratorDegree + 1;
  static constexpr int kDenominator = kDenominatorDegree;
  // Coefficient gradients per group: d/da_0..a_m, then d/db_1..b_n.
  static constexpr int kCoeffs = kNumerator + kDenominator;
  static constexpr int kMaxPower =
      kNumeratorDegree > kDenominatorDegree ? kNumeratorDegree : kDenominatorDegree;
};

template <typename T>
__device__ __forceinline__ T sign_with_positive_zero(T v) {
  // An IEEE comparison (the build keeps denormals): s(-0) = +1, s(-denormal) = -1, as on the CPU.
  return v >= T(0) ? T(1) : T(-1);
}

template <typename T, typename Order>
struct RationalCoeffs {
  T a[Order::kNumerator];
  T abs_b[Order::kDenominator];
};

template <typename T, typename Order>
__device__ __forceinline__ RationalCoeffs<T, Order> load_coeffs(const T* __restrict__ numerator,
                                                                const T* __restrict__ denominator,
                                                                int64_t group,
                                                                bool shared_numerator) {
  const T* a = numerator + (shared_numerator ? 0 : group * Order::kNumerator);
  const T* b = denominator + group * Order::kDenominator;
  RationalCoeffs<T, Order> c;
#pragma unroll
  for (int k = 0; k < Order::kNumerator; ++k) c.a[k] = __ldg(a + k);
#pragma unroll
  for (int k = 0; k < Order::kDenominator; ++k) {
    const T v = __ldg(b + k);
    c.abs_b[k] = sign_with_positive_zero(v) * v;
  }
  return c;
}

// Horner's scheme for P and Q, then P times 1 / Q by rcp.approx in fp32 (Q >= 1; within 2 ulp
// of P / Q): an IEEE division's 6 to 8 more instructions per element would make the bf16 forward
// instruction-bound (docs/ops.md).
template <typename T, typename Order>
__device__ __forceinline__ T rational(const RationalCoeffs<T, Order>& c, T x) {
  const T abs_x = fabs(x);
  T p = c.a[Order::kNumerator - 1];
#pragma unroll
  for (int k = Order::kNumerator - 2; k >= 0; --k) p = p * x + c.a[k];
  T q = c.abs_b[Order::kDenominator - 1];
#pragma unroll
  for (int k = Order::kDenominator - 2; k >= 0; --k) q = q * abs_x + c.abs_b[k];
  return p * approx_reciprocal(q * abs_x + T(1));
}

// Returns dy * dF/dx and adds dy * dF/da_k and dy * dF/db_k / s(b_k) to acc (s(b_k) is applied
// by the final reduction). 1 / Q by rcp.approx in fp32 (Q >= 1; 1 ulp), as in the forward.
template <typename T, typename Order>
__device__ __forceinline__ T rational_backward(const RationalCoeffs<T, Order>& c, T x, T dy,
                                               T (&acc)[Order::kCoeffs]) {
  const T sign_x = sign_with_positive_zero(x);
  const T abs_x = fabs(x);
  // P, R = dP/dx on x; Q, dQ/d|x| on |x| (Horner).
  T p = c.a[Order::kNumerator - 1];
  T dp = T(0);
#pragma unroll
  for (int k = Order::kNumerator - 2; k >= 0; --k) {
    dp = dp * x + p;
    p = p * x + c.a[k];
  }
  T q = c.abs_b[Order::kDenominator - 1];
  T dq = T(0);
#pragma unroll
  for (int k = Order::kDenominator - 2; k >= 0; --k) {
    dq = dq * abs_x + q;
    q = q * abs_x + c.abs_b[k];
  }
  dq = dq * abs_x + q;
  q = q * abs_x + T(1);
  const T inv_q = approx_reciprocal(q);
  const T f = p * inv_q;
  // P/Q^2 as F/Q: Q^2 can overflow fp32 where F/Q does not.
  const T dy_over_q = dy * inv_q;
  const T dy_f_over_q = dy_over_q * f;
  T power = T(1);  // x^k
#pragma unroll
  for (int k = 0; k <= Order::kMaxPower; ++k) {
    if (k < Order::kNumerator) acc[k] += dy_over_q * power;
    // |x|^k = s(x)^k x^k.
    if (k >= 1 && k <= Order::kDenominator) {
      const T abs_power = k % 2 == 0 ? power : sign_x * power;
      acc[Order::kNumerator + k - 1] -= dy_f_over_q * abs_power;
    }
    power = power * x;
  }
  // dF/dx = (R - S F) / Q with S = s(x) dQ/d|x|.
  return dy_over_q * (dp - sign_x * dq * f);
}

// Resident blocks per SM the kernels are compiled for: 4 (64 registers, half occupancy) in
// fp32; 2 in fp64, whose values take two registers each.
template <typename opmath_t>
constexpr int rational_min_blocks() {
  return sizeof(opmath_t) == 8 ? 2 : 4;
}

// Where a thread's elements are: the block's group, the offset of its first vector, and how
// many rows (of its chunk, rows_per_pass apart) it has.
struct RationalThread {
  int64_t group;
  int64_t offset;  // of the first row's vector in x
  int64_t step;    // elements from one of the thread's rows to the next
  int rows;        // 0 for a thread outside the slice

  __device__ RationalThread(const RationalLayout& layout, const RationalPlan& plan) {
    const int slice = static_cast<int>(blockIdx.x % plan.slices);
    group = blockIdx.x / plan.slices;
    const int column_in_slice = static_cast<int>(threadIdx.x % plan.slice_columns);
    const int row_in_pass = static_cast<int>(threadIdx.x / plan.slice_columns);
    const int64_t column_in_group =
        static_cast<int64_t>(slice) * plan.slice_columns + column_in_slice;
    const int64_t first_row = static_cast<int64_t>(blockIdx.y) * plan.chunk_rows + row_in_pass;
    const int64_t row_end = min(layout.rows, static_cast<int64_t>(blockIdx.y + 1) * plan.chunk_rows);
    const bool active = row_in_pass < plan.rows_per_pass && column_in_group < layout.group_columns;
    rows = active && first_row < row_end
               ? static_cast<int>((row_end - first_row + plan.rows_per_pass - 1) / plan.rows_per_pass)
               : 0;
    offset = first_row * layout.channels + (group * layout.group_columns + column_in_group) *
                                               layout.vec;
    step = static_cast<int64_t>(plan.rows_per_pass) * layout.channels;
  }
};

// F of kRows rows of the thread's vectors, their loads in flight together.
template <int kRows, typename scalar_t, typename opmath_t, typename Order, int kVec>
__device__ __forceinline__ void forward_rows(const RationalCoeffs<opmath_t, Order>& coeffs,
                                             const scalar_t* __restrict__ x,
                                             scalar_t* __restrict__ y, int64_t step) {
  using Vec = Pack<scalar_t, kVec>;
  Vec in[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) in[r] = load_pack<Vec>(x + r * step);
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    Vec out;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      out.val[v] = static_cast<scalar_t>(rational(coeffs, static_cast<opmath_t>(in[r].val[v])));
    }
    store_pack(y + r * step, out);
  }
}

// dx of kRows rows of the thread's vectors (loads in flight together), coefficient gradients
// added to acc.
template <int kRows, typename scalar_t, typename opmath_t, typename Order, int kVec>
__device__ __forceinline__ void backward_rows(const RationalCoeffs<opmath_t, Order>& coeffs,
                                              const scalar_t* __restrict__ grad_out,
                                              const scalar_t* __restrict__ x,
                                              scalar_t* __restrict__ grad_x, int64_t step,
                                              opmath_t (&acc)[Order::kCoeffs]) {
  using Vec = Pack<scalar_t, kVec>;
  Vec in[kRows], dy[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    in[r] = load_pack<Vec>(x + r * step);
    dy[r] = load_pack<Vec>(grad_out + r * step);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    Vec dx;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      dx.val[v] = static_cast<scalar_t>(rational_backward(
          coeffs, static_cast<opmath_t>(in[r].val[v]), static_cast<opmath_t>(dy[r].val[v]), acc));
    }
    store_pack(grad_x + r * step, dx);
  }
}

template <typename scalar_t, typename opmath_t, typename Order, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock, rational_min_blocks<opmath_t>())
    group_rational_forward_kernel(const scalar_t* __restrict__ x,
                                  const opmath_t* __restrict__ numerator,
                                  const opmath_t* __restrict__ denominator,
                                  scalar_t* __restrict__ y, RationalLayout layout,
                                  RationalPlan plan) {
  const RationalThread thread(layout, plan);
  if (thread.rows == 0) return;
  const RationalCoeffs<opmath_t, Order> coeffs =
      load_coeffs<opmath_t, Order>(numerator, denominator, thread.group, layout.shared_numerator);
  const scalar_t* src = x + thread.offset;
  scalar_t* dst = y + thread.offset;
  int rows = thread.rows;
  for (; rows >= kRowsInFlight; rows -= kRowsInFlight) {
    forward_rows<kRowsInFlight, scalar_t, opmath_t, Order, kVec>(coeffs, src, dst, thread.step);
    src += kRowsInFlight * thread.step;
    dst += kRowsInFlight * thread.step;
  }
  if (rows > 0) forward_rows<1, scalar_t, opmath_t, Order, kVec>(coeffs, src, dst, thread.step);
}

// partials: (Order::kCoeffs, num_blocks), block index blockIdx.x * gridDim.y + blockIdx.y, so
// that the blocks of one group are consecutive. counter: cleared by the launcher.
template <typename scalar_t, typename opmath_t, typename Order, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock, rational_min_blocks<opmath_t>())
    group_rational_backward_kernel(const scalar_t* __restrict__ grad_out,
                                   const scalar_t* __restrict__ x,
                                   const opmath_t* __restrict__ numerator,
                                   const opmath_t* __restrict__ denominator,
                                   scalar_t* __restrict__ grad_x,
                                   opmath_t* __restrict__ grad_numerator,
                                   opmath_t* __restrict__ grad_denominator,
                                   opmath_t* __restrict__ partials, unsigned* __restrict__ counter,
                                   RationalLayout layout, RationalPlan plan) {
  constexpr int kCoeffs = Order::kCoeffs;
  // Rows whose loads are in flight together: one for packs of 8 fp16/bf16 (16 elements at once
  // would not fit in the 64 registers of half occupancy).
  constexpr int kRows = kVec > 4 ? 1 : kRowsInFlight;
  MMRKAN_SHARED_ARRAY(opmath_t, scratch, [kWarpsPerBlock * kCoeffs]);
  const RationalThread thread(layout, plan);
  opmath_t acc[kCoeffs] = {};
  if (thread.rows > 0) {
    const RationalCoeffs<opmath_t, Order> coeffs = load_coeffs<opmath_t, Order>(
        numerator, denominator, thread.group, layout.shared_numerator);
    const scalar_t* dy = grad_out + thread.offset;
    const scalar_t* src = x + thread.offset;
    scalar_t* dst = grad_x + thread.offset;
    int rows = thread.rows;
    for (; rows >= kRows; rows -= kRows) {
      backward_rows<kRows, scalar_t, opmath_t, Order, kVec>(coeffs, dy, src, dst, thread.step,
                                                            acc);
      dy += kRows * thread.step;
      src += kRows * thread.step;
      dst += kRows * thread.step;
    }
    if (kRows > 1 && rows > 0) {
      backward_rows<1, scalar_t, opmath_t, Order, kVec>(coeffs, dy, src, dst, thread.step, acc);
    }
  }

  const int64_t block = static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y;
  const opmath_t block_total = block_sum(acc, scratch);
  if (threadIdx.x < kCoeffs) partials[threadIdx.x * plan.num_blocks + block] = block_total;
  if (!arrive_last(counter, static_cast<unsigned>(plan.num_blocks))) return;

  // The last block: every (group, coefficient) is a sum over the group's consecutive blocks,
  // one warp per sum; a shared numerator sums over all blocks.
  const int warp = threadIdx.x / kWarpSize;
  const int64_t group_blocks = static_cast<int64_t>(plan.slices) * gridDim.y;
  const int64_t numerator_rows = layout.shared_numerator ? 1 : layout.groups;
  const int64_t numerator_sums = numerator_rows * Order::kNumerator;
  const int64_t total = numerator_sums + layout.groups * Order::kDenominator;
  for (int64_t out = warp; out < total; out += kWarpsPerBlock) {
    opmath_t sum;
    if (out < numerator_sums) {
      const int64_t row = out / Order::kNumerator;
      const int k = static_cast<int>(out % Order::kNumerator);
      const opmath_t* values = partials + k * plan.num_blocks;
      sum = layout.shared_numerator ? warp_ordered_sum(values, plan.num_blocks)
                                    : warp_ordered_sum(values + row * group_blocks, group_blocks);
      if (threadIdx.x % kWarpSize == 0) grad_numerator[out] = sum;
    } else {
      const int64_t index = out - numerator_sums;  // group * n + k
      const int64_t group = index / Order::kDenominator;
      const int k = static_cast<int>(index % Order::kDenominator);
      sum = warp_ordered_sum(partials + (Order::kNumerator + k) * plan.num_blocks +
                                 group * group_blocks,
                             group_blocks);
      if (threadIdx.x % kWarpSize == 0) {
        grad_denominator[index] = sign_with_positive_zero(__ldg(denominator + index)) * sum;
      }
    }
  }
}

}  // namespace cuda
}  // namespace mmrkan
