// Python bindings of the emulation module (loaded by mmrkan/testing/cuda_emulation.py).
#include <torch/extension.h>

#include <array>
#include <vector>

#include "emulated_ops.h"

namespace {

using mmrkan::simt::EmulatedGpu;

dim3 to_dim3(const std::array<unsigned, 3>& d) { return dim3(d[0], d[1], d[2]); }

std::array<unsigned, 3> from_dim3(const dim3& d) { return {d.x, d.y, d.z}; }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace simt = mmrkan::simt;
  py::class_<EmulatedGpu>(m, "EmulatedGpu")
      .def(py::init<size_t, uint64_t>(), py::arg("smem_per_block"), py::arg("block_order"));
  m.def("group_rational_forward", &simt::group_rational_forward);
  m.def("group_rational_backward", &simt::group_rational_backward);
  m.def("kan_conv2d_forward", &simt::kan_conv2d_forward);
  m.def("kan_conv2d_backward", &simt::kan_conv2d_backward);
  m.def("group_rational_plan", &simt::group_rational_plan);
  m.def("kan_conv2d_plan", &simt::kan_conv2d_plan, py::arg("x"), py::arg("poly_weight"),
        py::arg("stride"), py::arg("basis"), py::arg("backward"), py::arg("normalization") = 1,
        py::arg("base_activation") = 0, py::arg("basis_params") = std::vector<double>());
  m.def("run_probe", &simt::run_probe, py::arg("probe"), py::arg("gpu"));
  m.def(
      "launch_empty_kernel",
      [](const std::array<unsigned, 3>& grid, const std::array<unsigned, 3>& block,
         size_t dynamic_smem, size_t smem_per_block) {
        simt::launch_empty_kernel(to_dim3(grid), to_dim3(block), dynamic_smem, smem_per_block);
      },
      py::arg("grid"), py::arg("block"), py::arg("dynamic_smem"), py::arg("smem_per_block"));
  m.def("launch_log", [] {
    std::vector<py::dict> records;
    for (const auto& record : simt::launch_log()) {
      py::dict entry;
      entry["grid"] = from_dim3(record.grid);
      entry["block"] = from_dim3(record.block);
      entry["dynamic_smem"] = record.dynamic_smem;
      entry["static_smem"] = record.static_smem;
      records.push_back(entry);
    }
    return records;
  });
  m.def("clear_launch_log", &simt::clear_launch_log);
}
