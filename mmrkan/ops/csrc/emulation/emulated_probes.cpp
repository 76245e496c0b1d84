// Small kernels that exercise the emulator itself: warp shuffles, per-block shared memory, and
// each failure a GPU would report (the launch checks are in simt.cpp).
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include "../common/cuda/kan_common_kernel.cuh"
#include "emulated_ops.h"

namespace mmrkan {
namespace simt {
namespace {

constexpr int kProbeThreads = 64;

__global__ void empty_kernel() {}

// out[t][i]: __shfl_down_sync of t by 16, 8, 4, 2, 1 lanes, then the warp sum in lane 0.
__global__ void shuffle_kernel(float* out) {
  const int t = threadIdx.x;
  int i = 0;
  for (int delta = 16; delta > 0; delta /= 2) {
    out[t * 6 + i++] = __shfl_down_sync(0xffffffffu, static_cast<float>(t), delta);
  }
  out[t * 6 + 5] = cuda::warp_reduce_sum(static_cast<float>(t));
}

// out[b][t] = the value thread t + 1 of block b stored in static shared memory, and
// out[b][64 + t] = what thread t + 1 stored in dynamic shared memory before the barrier.
__global__ void shared_memory_kernel(float* out) {
  MMRKAN_SHARED_ARRAY(float, values, [kProbeThreads]);
  MMRKAN_DYNAMIC_SMEM(float, dynamic_values);
  const int t = threadIdx.x;
  values[t] = 1000.f * blockIdx.x + t;
  dynamic_values[t] = -1000.f * blockIdx.x - t;
  __syncthreads();
  out[blockIdx.x * 2 * kProbeThreads + t] = values[(t + 1) % kProbeThreads];
  out[blockIdx.x * 2 * kProbeThreads + kProbeThreads + t] = dynamic_values[(t + 1) % kProbeThreads];
}

// Reads shared memory no thread wrote: the emulator's poison (NaN).
__global__ void unwritten_shared_kernel(float* out) {
  MMRKAN_SHARED_ARRAY(float, values, [kProbeThreads]);
  out[threadIdx.x] = values[threadIdx.x];
}

// Thread t reads what thread t + 1 wrote, without a __syncthreads() in between: a data race
// (ThreadSanitizer builds must report it).
__global__ void racy_shared_kernel(float* out) {
  MMRKAN_SHARED_ARRAY(float, values, [kProbeThreads]);
  const int t = threadIdx.x;
  values[t] = static_cast<float>(t);
  out[t] = values[(t + 1) % kProbeThreads];
}

__global__ void misaligned_vector_kernel(float* out) {
  using Vec = cuda::Pack<float, 4>;
  const Vec v = cuda::load_pack<Vec>(out + 1);
  out[threadIdx.x] = v.val[0];
}

__global__ void partial_mask_kernel(float* out) {
  out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, 1.f, 1);
}

__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1.f;
}

// 40 KiB of __shared__ arrays: over a 48 KiB block with the 16 KiB of dynamic memory the probe
// launches it with.
__global__ void large_shared_kernel(float* out) {
  MMRKAN_SHARED_ARRAY(float, values, [10 * 1024]);
  values[threadIdx.x] = 1.f;
  out[threadIdx.x] = values[threadIdx.x];
}

struct Probe {
  dim3 grid;
  dim3 block;
  size_t dynamic_smem;
  int64_t outputs;
  void (*kernel)(float*);
};

}  // namespace

at::Tensor run_probe(const std::string& probe, const EmulatedGpu& gpu) {
  // Kernels in a 32-thread warp or a 64-thread block: small, and two warps.
  const std::map<std::string, Probe> probes = {
      {"shuffle", {dim3(1), dim3(kProbeThreads), 0, kProbeThreads * 6, shuffle_kernel}},
      {"shared_memory",
       {dim3(3), dim3(kProbeThreads), kProbeThreads * sizeof(float), 3 * 2 * kProbeThreads,
        shared_memory_kernel}},
      {"unwritten_shared",
       {dim3(1), dim3(kProbeThreads), 0, kProbeThreads, unwritten_shared_kernel}},
      {"racy_shared", {dim3(1), dim3(kProbeThreads), 0, kProbeThreads, racy_shared_kernel}},
      {"misaligned_vector", {dim3(1), dim3(kProbeThreads), 0, kProbeThreads + 4,
                             misaligned_vector_kernel}},
      {"partial_mask", {dim3(1), dim3(kProbeThreads), 0, kProbeThreads, partial_mask_kernel}},
      {"partial_warp", {dim3(1), dim3(48), 0, 48 * 6, shuffle_kernel}},
      {"divergent_barrier", {dim3(1), dim3(kProbeThreads), 0, kProbeThreads,
                             divergent_barrier_kernel}},
      {"large_shared",
       {dim3(1), dim3(kProbeThreads), 16 * 1024, kProbeThreads, large_shared_kernel}},
  };
  const auto found = probes.find(probe);
  if (found == probes.end()) {
    std::string names;
    for (const auto& entry : probes) names += (names.empty() ? "" : ", ") + entry.first;
    throw std::invalid_argument("probe='" + probe + "' is not a probe kernel; allowed: " + names);
  }
  const Probe& p = found->second;
  at::Tensor out = at::zeros({p.outputs}, at::kFloat);
  float* data = out.mutable_data_ptr<float>();
  EmulatedDevice(gpu).launch(p.kernel, p.grid, p.block, p.dynamic_smem, data);
  return out;
}

void launch_empty_kernel(dim3 grid, dim3 block, size_t dynamic_smem, size_t smem_per_block) {
  launch(grid, block, dynamic_smem, smem_per_block, [] { empty_kernel(); });
}

}  // namespace simt
}  // namespace mmrkan
