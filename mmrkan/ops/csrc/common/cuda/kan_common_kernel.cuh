// Device helpers shared by the CUDA kernels of mmrkan's KAN ops: vector accesses, warp and block
// reductions. No ATen or CUDA runtime header: nvcc and the SIMT emulator compile the same code.
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

// Tree sum over the 32 lanes in a fixed order (deterministic); the result is in lane 0.
template <typename T>
__device__ __forceinline__ T warp_reduce_sum(T value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Deterministic sum of per-block partial sums.
//   out[row][j] = sum over r < num_partials and c in [row * row_cols, (row + 1) * row_cols) of
//                 partials[(r * cols + c) * width + first + j]
// grid = (rows, count of j), block = kThreadsPerBlock (plan_reduce_partials). Each thread adds a
// fixed strided subset in order, then the block adds the threads' sums in a fixed tree: no
// atomics, same bits every run.
template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    reduce_partials_kernel(const T* __restrict__ partials, int64_t num_partials, int64_t cols,
                           int64_t width, int64_t row_cols, int64_t first, T* __restrict__ out) {
  MMRKAN_SHARED_ARRAY(T, warp_sums, [kWarpsPerBlock]);
  const int64_t row = blockIdx.x;
  const int64_t j = blockIdx.y;
  const int64_t count = num_partials * row_cols;
  T sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += kThreadsPerBlock) {
    const int64_t r = i / row_cols;
    const int64_t c = row * row_cols + i % row_cols;
    sum += partials[(r * cols + c) * width + first + j];
  }
  sum = warp_reduce_sum(sum);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    sum = lane < kWarpsPerBlock ? warp_sums[lane] : T(0);
    sum = warp_reduce_sum(sum);
    if (lane == 0) out[row * gridDim.y + j] = sum;
  }
}

}  // namespace cuda
}  // namespace mmrkan
