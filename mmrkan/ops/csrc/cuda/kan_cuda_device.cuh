// The real GPU for the launchers (kan_launch_utils.h): the current device's SM count, occupancy
// from cudaOccupancyMaxActiveBlocksPerMultiprocessor, launches on the current stream.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace mmrkan {
namespace cuda {

class CudaDevice {
 public:
  CudaDevice() : stream_(at::cuda::getCurrentCUDAStream()) {}

  int sm_count() const { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

  template <typename Kernel>
  int blocks_per_sm(Kernel kernel, int threads, size_t dynamic_smem) const {
    int blocks = 0;
    C10_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, dynamic_smem));
    return blocks;
  }

  template <typename Kernel, typename... Args>
  void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_smem,
              const Args&... args) const {
    kernel<<<grid, block, dynamic_smem, stream_>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

 private:
  cudaStream_t stream_;
};

}  // namespace cuda
}  // namespace mmrkan
