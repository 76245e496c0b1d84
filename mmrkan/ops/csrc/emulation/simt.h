// A SIMT emulator that runs mmrkan's CUDA kernel headers (csrc/common/cuda) on the CPU.
//
// The kernels are compiled by the host compiler with MMRKAN_SIMT_EMULATION (kan_cuda_compat.cuh
// includes this header). simt::launch runs a grid: the blocks one after another, every CUDA thread
// of a block on its own host thread (a reused pool), with
//   * threadIdx / blockIdx / blockDim / gridDim as thread-local variables;
//   * __syncthreads() as a barrier over the block's threads;
//   * __shfl_down_sync() / __shfl_xor_sync() as an exchange over the 32 lanes of a warp (full mask
//     only);
//   * __threadfence() as a sequentially consistent fence, atomicAdd() as an atomic read-modify-write
//     of global memory, __ldg() / __ldcg() as plain loads;
//   * the approximate ex2.approx.ftz / rcp.approx.ftz instructions (ex2_approx, rcp_approx) as the
//     exact result moved by their documented maximum error, denormals flushed;
//   * static (MMRKAN_SHARED_ARRAY) and dynamic (MMRKAN_DYNAMIC_SMEM) shared memory in one
//     per-block buffer, filled with 0xff bytes (NaN for every float type) before each block, so
//     a read of shared memory that no thread of the block wrote shows up in the results.
// Blocks run one after another, by default in index order; a launch can run them in another order
// (a permutation seeded by `block_order`), as a GPU may, so that a result that depends on which
// block finishes last shows up in the tests.
// It refuses what a GPU refuses: a block over 1024 threads, grid y/z over 65535, shared memory
// over the per-block limit, a 16-byte vector access through a misaligned address. Threads that
// wait at different barriers (a __syncthreads() or shuffle not reached by all) are reported as
// a deadlock instead of hanging. The first fault aborts the launch, which throws
// std::runtime_error naming the block and thread.
//
// What it proves and what it does not: the README's section on the emulated CUDA tests.
#pragma once

#include <math.h>  // the float overloads of exp & co in the global namespace, as in CUDA

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;

namespace mmrkan {
namespace simt {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// A thread's fault (misaligned access, shared memory over the limit, wrong shuffle): aborts the
// launch.
class Fault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One emulated launch, for the tests: what the plan asked for.
struct LaunchRecord {
  dim3 grid;
  dim3 block;
  size_t dynamic_smem;
  size_t static_smem;
};

// Runs kernel_body() as every thread of the grid; returns when all blocks have finished. Throws
// std::runtime_error if the configuration is one a GPU refuses or a thread faults. One launch at
// a time per process (concurrent callers wait). block_order 0 runs the blocks in index order,
// any other value in a permutation of them seeded by it.
void launch(dim3 grid, dim3 block, size_t dynamic_smem, size_t smem_per_block_limit,
            const std::function<void()>& kernel_body, uint64_t block_order = 0);

std::vector<LaunchRecord> launch_log();
void clear_launch_log();

// Device-side API, called from kernel code on an emulated thread.
[[noreturn]] void fault(const std::string& message);
void sync_block();
int lane_id();
// Lane `src_lane` of this warp's `value` (bytes each) into `result`, after all 32 lanes arrived.
void warp_exchange(unsigned mask, int width, const char* intrinsic, const void* value,
                   void* result, size_t bytes, int src_lane);
void check_vector_access(const void* ptr, size_t bytes, const char* what);
// ex2.approx.ftz.f32 and rcp.approx.ftz.f32 (PTX ISA: at most 2 and 1 ulp from the correctly
// rounded result): the correctly rounded result moved up by that many ulp, denormal inputs and
// results flushed to zero of the same sign, as the hardware does.
float ex2_approx(float x);
float rcp_approx(float x);
void* allocate_static_shared(size_t bytes, size_t alignment);
void* dynamic_shared_memory();

// The block's array of type A (e.g. float[8][4]); every thread that declares the same arrays in
// the same order gets the same memory.
template <typename A>
A& static_shared() {
  return *static_cast<A*>(allocate_static_shared(sizeof(A), alignof(A)));
}

template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_memory());
}

}  // namespace simt
}  // namespace mmrkan

inline void __syncthreads() { mmrkan::simt::sync_block(); }

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = mmrkan::simt::kWarpSize) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "__shfl_down_sync moves values of at most 8 bytes");
  const int lane = mmrkan::simt::lane_id();
  const int source = lane + static_cast<int>(delta);
  T result;
  mmrkan::simt::warp_exchange(mask, width, "__shfl_down_sync", &value, &result, sizeof(T),
                              source < width ? source : lane);
  return result;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = mmrkan::simt::kWarpSize) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "__shfl_xor_sync moves values of at most 8 bytes");
  const int lane = mmrkan::simt::lane_id();
  // As on the GPU: a source lane outside the caller's segment of `width` lanes returns its own.
  const int source = lane ^ lane_mask;
  T result;
  mmrkan::simt::warp_exchange(mask, width, "__shfl_xor_sync", &value, &result, sizeof(T),
                              source / width == lane / width ? source : lane);
  return result;
}

// A GPU orders this thread's global memory accesses before the fence before those after it, as
// seen by every thread of the device.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}

inline int atomicAdd(int* address, int value) {
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}

// Loads through the read-only cache / the L2 only: plain loads for the emulator.
template <typename T>
T __ldg(const T* address) {
  return *address;
}

template <typename T>
T __ldcg(const T* address) {
  return *address;
}

inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}

// CUDA's min() / max() overloads for device code.
template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}
