// Shared host side of the CUDA launchers (group_rational_launcher.h, kan_conv2d_launcher.h).
//
// The launchers are templates on the device that runs the kernels: CudaDevice
// (kan_cuda_device.cuh) in the .cu files, the SIMT emulator's EmulatedDevice (csrc/emulation) in
// the tests, so both run the same plans, launches and reductions. A Device provides
//   int sm_count() const;
//   int blocks_per_sm(Kernel kernel, int threads, size_t dynamic_smem) const;  // occupancy
//   void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_smem, Args... args) const;
#pragma once

#include <cstddef>
#include <cstdint>

#include "../common/cuda/kan_common_kernel.cuh"
#include "../common/cuda/kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

inline bool is_aligned(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// The plans' blocks_per_sm(dynamic_smem) callback for `kernel` of kThreadsPerBlock threads.
template <typename Device, typename Kernel>
auto occupancy(const Device& device, Kernel kernel) {
  return [&device, kernel](size_t dynamic_smem) {
    return device.blocks_per_sm(kernel, kThreadsPerBlock, dynamic_smem);
  };
}

// Launches reduce_partials_kernel for out of shape (rows, count).
template <typename Device, typename T>
void reduce_partials(const Device& device, const T* partials, int64_t num_partials, int64_t cols,
                     int64_t width, int64_t rows, int64_t row_cols, int64_t first, int64_t count,
                     T* out) {
  device.launch(reduce_partials_kernel<T>, reduce_partials_grid(rows, count),
                dim3(kThreadsPerBlock), 0, partials, num_partials, cols, width, row_cols, first,
                out);
}

}  // namespace cuda
}  // namespace mmrkan
