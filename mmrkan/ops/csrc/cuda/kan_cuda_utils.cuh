// Helpers shared by the CUDA kernels of mmrkan's KAN ops.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

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

inline bool is_aligned(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// Blocks of `kernel` that fit on the whole device at once: a grid of this size, looping over the
// work, runs in one wave and keeps per-block partial sums few.
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int threads, size_t dynamic_smem_bytes) {
  int blocks_per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, threads,
                                                               dynamic_smem_bytes));
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, static_cast<int64_t>(blocks_per_sm) * sms);
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
// grid = (rows, count of j), block = kThreadsPerBlock. Each thread adds a fixed strided subset in
// order, then the block adds the threads' sums in a fixed tree: no atomics, same bits every run.
template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    reduce_partials_kernel(const T* __restrict__ partials, int64_t num_partials, int64_t cols,
                           int64_t width, int64_t row_cols, int64_t first, T* __restrict__ out) {
  __shared__ T warp_sums[kWarpsPerBlock];
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

// Launches reduce_partials_kernel for out of shape (rows, count), on the current stream.
template <typename T>
void reduce_partials(const T* partials, int64_t num_partials, int64_t cols, int64_t width,
                     int64_t rows, int64_t row_cols, int64_t first, int64_t count, T* out,
                     cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(count));
  reduce_partials_kernel<T><<<grid, kThreadsPerBlock, 0, stream>>>(partials, num_partials, cols,
                                                                   width, row_cols, first, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace mmrkan
