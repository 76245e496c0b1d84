// The emulated GPU for the CUDA launchers (csrc/cuda/kan_launch_utils.h): the kernels run on the
// SIMT emulator (simt.h) under the chosen GPU's launch limits and block order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simt.h"

namespace mmrkan {
namespace simt {

// What the launchers and the launch checks see of a GPU. The launch plans depend on the shapes
// only, so the GPU changes the order in which blocks run, not what they compute.
struct EmulatedGpu {
  size_t smem_per_block;  // bytes, static + dynamic: the launch limit
  uint64_t block_order;   // 0: blocks in index order; else the seed of a permutation
};

class EmulatedDevice {
 public:
  explicit EmulatedDevice(const EmulatedGpu& gpu) : gpu_(gpu) {}

  size_t max_smem_per_block() const { return gpu_.smem_per_block; }

  template <typename Kernel, typename... Args>
  void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_smem,
              const Args&... args) const {
    simt::launch(grid, block, dynamic_smem, gpu_.smem_per_block, [&] { kernel(args...); },
                 gpu_.block_order);
  }

  void memset(void* ptr, int value, size_t bytes) const { std::memset(ptr, value, bytes); }

 private:
  EmulatedGpu gpu_;
};

}  // namespace simt
}  // namespace mmrkan
