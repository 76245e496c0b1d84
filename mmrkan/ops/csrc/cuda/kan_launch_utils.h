// Shared host side of the CUDA launchers (group_rational_launcher.h, kan_conv2d_launcher.h).
//
// The launchers are templates on the device that runs the kernels: CudaDevice
// (kan_cuda_device.cuh) in the .cu files, the SIMT emulator's EmulatedDevice (csrc/emulation) in
// the tests, so both run the same plans and launches. A Device provides
//   size_t max_smem_per_block() const;  // shared memory a block may use without opt-in
//   void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_smem, Args... args) const;
//   void memset(void* ptr, int value, size_t bytes) const;  // stream-ordered, like a launch
// The launch plans (common/cuda/kan_launch_plan.h) depend on the shapes only.
#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdint>

#include "../common/cuda/kan_common_kernel.cuh"
#include "../common/cuda/kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

inline bool is_aligned(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// The plans keep below kConvSmemBudget; a device with less shared memory per block is refused
// with a message rather than by a failed launch.
template <typename Device>
void check_shared_memory(const Device& device, size_t bytes, const char* op) {
  TORCH_CHECK(bytes <= device.max_smem_per_block(), op, ": the CUDA kernel needs ", bytes,
              " bytes of shared memory per block; this GPU allows ", device.max_smem_per_block());
}

}  // namespace cuda
}  // namespace mmrkan
