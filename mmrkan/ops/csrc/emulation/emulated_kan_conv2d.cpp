// kan_conv2d's CUDA launcher and kernels, compiled for the SIMT emulator.
#include "../cuda/kan_conv2d_launcher.h"
#include "emulated_ops.h"

namespace mmrkan {
namespace simt {

at::Tensor kan_conv2d_forward(const EmulatedGpu& gpu, const at::Tensor& x,
                              const at::Tensor& base_weight, const at::Tensor& poly_weight,
                              const at::Tensor& norm_scale, int64_t stride, int64_t basis,
                              int64_t normalization, int64_t base_activation,
                              const std::vector<double>& basis_params) {
  return cuda::kan_conv2d_forward(
      EmulatedDevice(gpu), x, base_weight, poly_weight, norm_scale,
      cuda::ConvOptions{stride, basis, normalization, base_activation, basis_params});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward(
    const EmulatedGpu& gpu, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& base_weight, const at::Tensor& poly_weight, const at::Tensor& norm_scale,
    int64_t stride, int64_t basis, int64_t normalization, int64_t base_activation,
    const std::vector<double>& basis_params) {
  return cuda::kan_conv2d_backward(
      EmulatedDevice(gpu), grad_out, x, base_weight, poly_weight, norm_scale,
      cuda::ConvOptions{stride, basis, normalization, base_activation, basis_params});
}

std::map<std::string, int64_t> kan_conv2d_plan(const at::Tensor& x, const at::Tensor& poly_weight,
                                               int64_t stride, int64_t basis, bool backward,
                                               int64_t normalization, int64_t base_activation,
                                               const std::vector<double>& basis_params) {
  std::map<std::string, int64_t> plan;
  const cuda::ConvOptions options{stride, basis, normalization, base_activation, basis_params};
  if (cuda::per_window(options)) {
    const cuda::WindowPlan window =
        cuda::make_window_plan(x.size(0) * x.size(1), static_cast<int>(x.size(2)),
                               static_cast<int>(x.size(3)), static_cast<int>(stride), backward);
    return {{"per_window", 1}, {"specialised", 0}, {"chunk", window.chunk},
            {"blocks", window.blocks}};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "kan_conv2d_plan", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    cuda::dispatch_kan_conv2d<scalar_t>(
        options, poly_weight.size(1), [&](const auto& family, auto kernel_stride) {
          using Basis = std::decay_t<decltype(family)>;
          const cuda::ConvGeometry geo =
              cuda::make_conv_geometry<opmath_t, Basis, decltype(kernel_stride)::value>(
                  x, backward ? cuda::kBackwardMinTilesPerBlock : 1, backward);
          plan = {{"per_window", 0},
                  {"specialised", std::is_same<Basis, cuda::RuntimeBasis<opmath_t>>::value ? 0 : 1},
                  {"stored_features", Basis::kStored},
                  {"strip", geo.strip},
                  {"tile_planes", geo.tile_planes},
                  {"tile_h", geo.tile_h},
                  {"tile_w", geo.tile_w},
                  {"strips_w", geo.strips_w},
                  {"tiles_w", geo.tiles_w},
                  {"tiles_h", geo.tiles_h},
                  {"num_tiles", geo.num_tiles},
                  {"tiles_per_block", geo.tiles_per_block},
                  {"blocks", geo.blocks},
                  {"win_h", geo.win_h},
                  {"win_w", geo.win_w},
                  {"window_rows", geo.window_rows()},
                  {"win_pitch", geo.win_pitch},
                  {"win_h", geo.win_h},
                  {"planes_per_step", geo.planes_per_step},
                  {"dy_count", backward ? geo.dy_box.count : 0},
                  {"smem_bytes", static_cast<int64_t>(geo.smem_bytes)}};
        });
  });
  return plan;
}

}  // namespace simt
}  // namespace mmrkan
