// Small kernels that exercise the emulator itself: warp shuffles, per-block shared memory, the
// last-block-done protocol under a block order, the approximate instructions, and each failure a
// GPU would report (the launch checks are in simt.cpp).
#include <ATen/ATen.h>

#include <cmath>
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

// out[t][i]: __shfl_down_sync of t by 16, 8, 4, 2, 1 lanes, then the tree sum they give in
// lane 0.
__global__ void shuffle_kernel(float* out) {
  const int t = threadIdx.x;
  int i = 0;
  float sum = static_cast<float>(t);
  for (int delta = 16; delta > 0; delta /= 2) {
    out[t * 6 + i++] = __shfl_down_sync(0xffffffffu, static_cast<float>(t), delta);
    sum += __shfl_down_sync(0xffffffffu, sum, delta);
  }
  out[t * 6 + 5] = sum;
}

// out[t][i]: __shfl_xor_sync of t with lane masks 16, 8, 4, 2, 1, then the butterfly warp sum.
__global__ void shuffle_xor_kernel(float* out) {
  const int t = threadIdx.x;
  int i = 0;
  for (int mask = 16; mask > 0; mask /= 2) {
    out[t * 6 + i++] = __shfl_xor_sync(0xffffffffu, static_cast<float>(t), mask);
  }
  out[t * 6 + 5] = cuda::warp_sum(static_cast<float>(t));
}

// Completion counters of the last_block probe (cleared before its launch).
unsigned probe_counters[2];
constexpr int kProbeBlocks = 8;

// Block b stores partial b + 1 and its arrival ticket; the block that arrives last sums the
// partials (out[0]) and says who it is (out[1]). out[2 + b]: block b's ticket (0 = first).
__global__ void last_block_kernel(float* out) {
  float* partials = out + 2 + kProbeBlocks;
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = static_cast<float>(blockIdx.x + 1);
    out[2 + blockIdx.x] = static_cast<float>(atomicAdd(&probe_counters[1], 1u));
  }
  if (!cuda::arrive_last(&probe_counters[0], gridDim.x)) return;
  const float sum = cuda::warp_ordered_sum(partials, kProbeBlocks);
  if (threadIdx.x == 0) {
    out[0] = sum;
    out[1] = static_cast<float>(blockIdx.x);
  }
}

// The approximate instructions on the inputs in out[0..n): out[n + i] = 2^x, out[2n + i] = 1/x.
constexpr int kApproxInputs = 8;
__global__ void approx_kernel(float* out) {
  if (threadIdx.x >= kApproxInputs) return;
  const float x = out[threadIdx.x];
  out[kApproxInputs + threadIdx.x] = cuda::approx_exp2(x);
  out[2 * kApproxInputs + threadIdx.x] = cuda::approx_reciprocal(x);
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
      {"shuffle_xor", {dim3(1), dim3(kProbeThreads), 0, kProbeThreads * 6, shuffle_xor_kernel}},
      {"last_block", {dim3(kProbeBlocks), dim3(kProbeThreads), 0, 2 + 2 * kProbeBlocks,
                      last_block_kernel}},
      {"approx", {dim3(1), dim3(kProbeThreads), 0, 3 * kApproxInputs, approx_kernel}},
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
  probe_counters[0] = probe_counters[1] = 0;
  if (probe == "approx") {
    // Inputs: exact powers and reciprocals, rounding cases, a denormal input and result,
    // overflow, infinity.
    const float inputs[kApproxInputs] = {0.f, 1.f, -1.5f, 10.3f, 1e38f, 1e-39f, 200.f, -INFINITY};
    for (int i = 0; i < kApproxInputs; ++i) data[i] = inputs[i];
  }
  EmulatedDevice(gpu).launch(p.kernel, p.grid, p.block, p.dynamic_smem, data);
  return out;
}

void launch_empty_kernel(dim3 grid, dim3 block, size_t dynamic_smem, size_t smem_per_block) {
  launch(grid, block, dynamic_smem, smem_per_block, [] { empty_kernel(); });
}

}  // namespace simt
}  // namespace mmrkan
