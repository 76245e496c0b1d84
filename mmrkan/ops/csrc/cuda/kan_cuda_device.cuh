// The real GPU for the launchers (kan_launch_utils.h): launches and memsets on the current stream,
// the device's shared memory limit read once per device.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <mutex>

namespace mmrkan {
namespace cuda {

class CudaDevice {
 public:
  CudaDevice() : device_(c10::cuda::current_device()), stream_(at::cuda::getCurrentCUDAStream()) {}

  // cudaDevAttrMaxSharedMemoryPerBlock, queried on the first call for each device.
  size_t max_smem_per_block() const {
    static std::array<std::once_flag, kMaxDevices> once;
    static std::array<size_t, kMaxDevices> bytes;
    TORCH_CHECK(device_ >= 0 && device_ < kMaxDevices, "mmrkan: CUDA device index ", device_,
                " is over the ", kMaxDevices, " devices the kernels support");
    std::call_once(once[device_], [this] {
      int value = 0;
      C10_CUDA_CHECK(
          cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlock, device_));
      bytes[device_] = static_cast<size_t>(value);
    });
    return bytes[device_];
  }

  template <typename Kernel, typename... Args>
  void launch(Kernel kernel, dim3 grid, dim3 block, size_t dynamic_smem,
              const Args&... args) const {
    kernel<<<grid, block, dynamic_smem, stream_>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  void memset(void* ptr, int value, size_t bytes) const {
    C10_CUDA_CHECK(cudaMemsetAsync(ptr, value, bytes, stream_));
  }

 private:
  static constexpr int kMaxDevices = 64;
  int device_;
  cudaStream_t stream_;
};

}  // namespace cuda
}  // namespace mmrkan
