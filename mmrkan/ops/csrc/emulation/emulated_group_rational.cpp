// group_rational's CUDA launcher and kernels, compiled for the SIMT emulator.
#include "../cuda/group_rational_launcher.h"
#include "emulated_ops.h"

namespace mmrkan {
namespace simt {

at::Tensor group_rational_forward(const EmulatedGpu& gpu, const at::Tensor& x,
                                  const at::Tensor& numerator, const at::Tensor& denominator) {
  return cuda::group_rational_forward(EmulatedDevice(gpu), x, numerator, denominator);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward(
    const EmulatedGpu& gpu, const at::Tensor& grad_out, const at::Tensor& x,
    const at::Tensor& numerator, const at::Tensor& denominator) {
  return cuda::group_rational_backward(EmulatedDevice(gpu), grad_out, x, numerator, denominator);
}

std::map<std::string, int64_t> group_rational_plan(const at::Tensor& x, const at::Tensor& numerator,
                                                   const at::Tensor& denominator) {
  const int vec = cuda::rational_vector_width(x, denominator, {x.const_data_ptr()});
  const cuda::RationalLayout layout = cuda::make_rational_layout(x, numerator, denominator, vec);
  const cuda::RationalPlan plan = cuda::plan_rational_launch(layout);
  return {{"vec", vec},
          {"grid_x", plan.grid.x},
          {"grid_y", plan.grid.y},
          {"slice_columns", plan.slice_columns},
          {"slices", plan.slices},
          {"rows_per_pass", plan.rows_per_pass},
          {"passes", plan.passes},
          {"chunk_rows", plan.chunk_rows},
          {"num_blocks", plan.num_blocks}};
}

}  // namespace simt
}  // namespace mmrkan
