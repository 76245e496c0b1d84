// The emulated GPU for the CUDA launchers (csrc/cuda/kan_launch_utils.h): the launch plans see
// the chosen GPU's SM count and occupancy, and the kernels run on the SIMT emulator (simt.h).
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>

#include "simt.h"

namespace mmrkan {
namespace simt {

// The properties a launch plan and the launch checks depend on.
struct EmulatedGpu {
  int sm_count;
  int max_blocks_per_sm;  // resident blocks per SM when nothing else limits them
  size_t smem_per_sm;     // bytes
  size_t smem_per_block;  // bytes, static + dynamic: the launch limit
};

class EmulatedDevice {
 public:
  explicit EmulatedDevice(const EmulatedGpu& gpu) : gpu_(gpu) {}

  int sm_count() const { return gpu_.sm_count; }

  // Occupancy limited by the threads (2048 per SM on every GPU since compute capability 3.0)
  // and the dynamic shared memory; the emulator knows neither registers nor static shared
  // memory before the launch.
  template <typename Kernel>
  int blocks_per_sm(Kernel, int threads, size_t dynamic_smem) const {
    const int by_threads = 2048 / threads;
    const size_t by_smem = dynamic_smem == 0 ? INT_MAX : gpu_.smem_per_sm / dynamic_smem;
    return std::min<int>({gpu_.max_blocks_per_sm, by_threads,
                          static_cast<int>(std::min<size_t>(by_smem, INT_MAX))});
  }

  template <typename Kernel, typename... Args>
  void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_smem,
              const Args&... args) const {
    simt::launch(grid, block, dynamic_smem, gpu_.smem_per_block, [&] { kernel(args...); });
  }

 private:
  EmulatedGpu gpu_;
};

}  // namespace simt
}  // namespace mmrkan
