// Device helpers shared by the CUDA kernels of mmrkan's KAN ops: vector accesses, approximate
// math, deterministic warp/block sums and the last-block-done reduction. No ATen or CUDA runtime
// header: nvcc and the SIMT emulator compile the same code.
#pragma once

#include <cstdint>

#include "kan_cuda_compat.cuh"

namespace mmrkan {
namespace cuda {

constexpr int kThreadsPerBlock = 256;
constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = kThreadsPerBlock / kWarpSize;
// Widest global access of one thread.
constexpr int kVectorBytes = 16;

// kSize consecutive elements moved by one 16-byte (or narrower) access.
template <typename T, int kSize>
struct alignas(sizeof(T) * kSize) Pack {
  T val[kSize];
};

// *ptr as one Pack access (ptr must be aligned to the Pack, as on the GPU).
template <typename Vec, typename T>
__device__ __forceinline__ Vec load_pack(const T* ptr) {
  MMRKAN_CHECK_VECTOR_ACCESS(ptr, sizeof(Vec), "load");
  return *reinterpret_cast<const Vec*>(ptr);
}

template <typename Vec, typename T>
__device__ __forceinline__ void store_pack(T* ptr, const Vec& value) {
  MMRKAN_CHECK_VECTOR_ACCESS(ptr, sizeof(Vec), "store");
  *reinterpret_cast<Vec*>(ptr) = value;
}

// ---- Approximate math (docs/ops.md, "CUDA kernels": where and by how much it differs) ----------
// The build has no --use_fast_math: IEEE division, no flush of denormals. These two single
// instructions are used where their error is far below what the result needs.

// 2^x by ex2.approx.ftz.f32 (one MUFU.EX2; at most 2 ulp from the rounded result).
__device__ __forceinline__ float approx_exp2(float x) {
#ifdef MMRKAN_SIMT_EMULATION
  return ::mmrkan::simt::ex2_approx(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

// 1 / x by rcp.approx.ftz.f32 (one MUFU.RCP; at most 1 ulp from the rounded result).
__device__ __forceinline__ float approx_reciprocal(float x) {
#ifdef MMRKAN_SIMT_EMULATION
  return ::mmrkan::simt::rcp_approx(x);
#else
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

__device__ __forceinline__ double approx_reciprocal(double x) { return 1.0 / x; }

// tanh v = s(v) (1 - 2 / (e^{2|v|} + 1)): two MUFU instructions and four others. Absolute error
// about 2e-7 (relative error larger near 0, where only the absolute error matters for the
// Chebyshev features T_k(tanh v)). Large |v| give e = inf, 1 / inf = 0, tanh = +-1 exactly.
__device__ __forceinline__ float fast_tanh(float v) {
  constexpr float kTwoLog2E = 2.885390081777927f;  // 2 / ln 2
  const float e = approx_exp2(fabsf(v) * kTwoLog2E);
  return copysignf(fmaf(-2.f, approx_reciprocal(e + 1.f), 1.f), v);
}

__device__ __forceinline__ double fast_tanh(double v) { return tanh(v); }

// e^x for x <= 0 (the rbf bumps): one multiply and one MUFU.EX2.
__device__ __forceinline__ float fast_exp(float x) {
  return approx_exp2(x * 1.4426950408889634f);
}

__device__ __forceinline__ double fast_exp(double x) { return exp(x); }

// ---- Deterministic sums ------------------------------------------------------------------------

// Butterfly sum over the 32 lanes: every lane gets the same bits (a + b == b + a in IEEE), in an
// order fixed by the lane numbers only.
template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, mask);
  }
  return value;
}

// Sums values[k] (k < N) over the block's kThreadsPerBlock threads: lanes by warp_sum, then the
// warps in index order. Every thread must call it; thread k < N returns the sum of values[k]
// (the others 0). scratch: kWarpsPerBlock * N elements of shared memory.
template <typename T, int N>
__device__ __forceinline__ T block_sum(const T (&values)[N], T* scratch) {
  static_assert(N <= kThreadsPerBlock, "one thread per sum");
  const int thread = threadIdx.x + threadIdx.y * blockDim.x;
  const int warp = thread / kWarpSize;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const T sum = warp_sum(values[k]);
    if (thread % kWarpSize == 0) scratch[warp * N + k] = sum;
  }
  __syncthreads();
  T sum = T(0);
  if (thread < N) {
    sum = scratch[thread];
#pragma unroll
    for (int w = 1; w < kWarpsPerBlock; ++w) sum += scratch[w * N + thread];
  }
  return sum;
}

// As block_sum, with the even and the odd lanes summed apart (values of two kinds, by lane
// parity): thread h * N + k < 2 N returns the sum of values[k] over the threads of parity h.
// scratch: kWarpsPerBlock * 2 * N elements of shared memory.
template <typename T, int N>
__device__ __forceinline__ T block_sum_by_lane_parity(const T (&values)[N], T* scratch) {
  static_assert(2 * N <= kThreadsPerBlock, "one thread per sum");
  const int thread = threadIdx.x + threadIdx.y * blockDim.x;
  const int warp = thread / kWarpSize;
  const int lane = thread % kWarpSize;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    T sum = values[k];
#pragma unroll
    for (int mask = kWarpSize / 2; mask > 1; mask /= 2) {
      sum += __shfl_xor_sync(0xffffffffu, sum, mask);
    }
    if (lane < 2) scratch[(warp * 2 + lane) * N + k] = sum;
  }
  __syncthreads();
  T sum = T(0);
  if (thread < 2 * N) {
    sum = scratch[thread];
#pragma unroll
    for (int w = 1; w < kWarpsPerBlock; ++w) sum += scratch[w * 2 * N + thread];
  }
  return sum;
}

// The last-block-done protocol: each block stores its partial sums, then calls this (every
// thread). It returns true, in every thread, in the one block that arrives last; that block then
// sees every other block's partials (the release fence of each writer before its arrival, the
// acquire fence after the last arrival). `counter` starts at 0 (the launcher clears it).
__device__ __forceinline__ bool arrive_last(unsigned* counter, unsigned num_blocks) {
  MMRKAN_SHARED_ARRAY(unsigned, last, [1]);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) last[0] = atomicAdd(counter, 1u) == num_blocks - 1;
  __syncthreads();
  const bool is_last = last[0] != 0;
  if (is_last) __threadfence();
  return is_last;
}

// sum over i < count of values[i], by one warp: lane l adds l, l + 32, ... in order, then the
// lanes are combined by warp_sum. Loads bypass L1 (the values come from other blocks).
template <typename T>
__device__ __forceinline__ T warp_ordered_sum(const T* values, int64_t count) {
  const int lane = (threadIdx.x + threadIdx.y * blockDim.x) % kWarpSize;
  T sum = 0;
  for (int64_t i = lane; i < count; i += kWarpSize) sum += __ldcg(values + i);
  return warp_sum(sum);
}

}  // namespace cuda
}  // namespace mmrkan
