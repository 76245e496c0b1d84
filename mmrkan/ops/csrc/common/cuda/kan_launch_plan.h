// Launch plans of mmrkan's CUDA kernels: grid, block, dynamic shared memory, number of partial
// sums and vector width as plain host functions of the device's properties and the shapes.
//
// The real launchers (csrc/cuda) call them with the device's SM count and the occupancy that
// cudaOccupancyMaxActiveBlocksPerMultiprocessor reports; the SIMT emulator (csrc/emulation) calls
// them with the properties of a chosen GPU, so it runs exactly the grids that GPU would run.
// No ATen or CUDA runtime header (dim3 comes from nvcc or from the emulator).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kan_common_kernel.cuh"

namespace mmrkan {
namespace cuda {

// blocks_per_sm(dynamic_smem_bytes) -> resident blocks of the kernel per SM (the occupancy).
// Blocks that fit on the whole device at once: a grid of this size, looping over the work, runs
// in one wave and keeps per-block partial sums few.
template <typename BlocksPerSm>
int64_t resident_blocks(int sm_count, BlocksPerSm&& blocks_per_sm, size_t dynamic_smem_bytes) {
  return std::max<int64_t>(1, static_cast<int64_t>(blocks_per_sm(dynamic_smem_bytes)) * sm_count);
}

// reduce_partials_kernel: one block per output element (rows x count).
inline dim3 reduce_partials_grid(int64_t rows, int64_t count) {
  return dim3(static_cast<unsigned>(rows), static_cast<unsigned>(count));
}

// ---- group_rational ----------------------------------------------------------------------------

// Numerator degree 5 (a0..a5) and denominator degree 4 (b1..b4), as in kan_ops.h.
constexpr int kNumNumerator = 6;
constexpr int kNumDenominator = 4;

struct RationalLayout {
  int64_t rows;            // x.numel() / C
  int64_t channels;        // C
  int64_t columns;         // C / kVec: one per thread column
  int64_t group_columns;   // (C / g) / kVec: columns per group
  bool shared_numerator;   // numerator (1, 6) instead of (g, 6)
};

// 16-byte accesses need each group's width to be a multiple of the vector (a vector never
// straddles two groups, rows stay aligned) and 16-byte aligned pointers; else one channel.
inline int rational_vector_width(int64_t channels_per_group, int64_t element_size,
                                 bool pointers_aligned) {
  const int64_t vec = kVectorBytes / element_size;
  return pointers_aligned && channels_per_group % vec == 0 ? static_cast<int>(vec) : 1;
}

inline RationalLayout make_rational_layout(int64_t numel, int64_t channels, int64_t groups,
                                           bool shared_numerator, int vec) {
  RationalLayout layout;
  layout.rows = numel / channels;
  layout.channels = channels;
  layout.columns = channels / vec;
  layout.group_columns = channels / groups / vec;
  layout.shared_numerator = shared_numerator;
  return layout;
}

struct RationalPlan {
  dim3 grid;
  dim3 block;
  int64_t num_partials;  // backward: one row of coefficient partial sums per block row
};

// Threads per block along the columns: a warp spans 32 columns, or whole rows when C is narrow
// (rows are contiguous, so the warp's accesses stay contiguous either way). grid.y covers the
// rows up to one wave of resident blocks; the kernels loop over the rest (grid stride).
// The caller checks that the columns' grid.x fits in 31 bits.
template <typename BlocksPerSm>
RationalPlan plan_group_rational(const RationalLayout& layout, int sm_count,
                                 BlocksPerSm&& blocks_per_sm) {
  int block_x = 1;
  while (block_x < kWarpSize && block_x < layout.columns) block_x *= 2;
  const int block_y = kThreadsPerBlock / block_x;
  const int64_t grid_x = (layout.columns + block_x - 1) / block_x;
  const int64_t wanted_y = (layout.rows + block_y - 1) / block_y;
  const int64_t resident_y =
      std::max<int64_t>(1, resident_blocks(sm_count, blocks_per_sm, 0) / grid_x);
  const int64_t grid_y = std::min<int64_t>({wanted_y, resident_y, 65535});
  RationalPlan plan;
  plan.grid = dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y));
  plan.block = dim3(block_x, block_y);
  plan.num_partials = grid_y;
  return plan;
}

// ---- kan_conv2d --------------------------------------------------------------------------------

// 3x3 window with zero padding 1, as in kan_ops.h.
constexpr int kNumTaps = 9;

// ceil(n / ceil(n / cap)): the largest tile size <= cap that splits n into equal-ish tiles.
inline int balanced_tile(int n, int cap) {
  const int tiles = (n + cap - 1) / cap;
  return (n + tiles - 1) / tiles;
}

// Output tiles of one plane: tile_w up to a warp, tile_h so that a tile has at most
// kThreadsPerBlock outputs.
struct ConvTiling {
  int tile_h, tile_w, tiles_w;
  int64_t tiles_h;
};

inline ConvTiling make_conv_tiling(int out_height, int out_width) {
  ConvTiling tiling;
  tiling.tile_w = balanced_tile(out_width, kWarpSize);
  tiling.tile_h = balanced_tile(out_height, std::max(1, kThreadsPerBlock / tiling.tile_w));
  tiling.tiles_w = (out_width + tiling.tile_w - 1) / tiling.tile_w;
  tiling.tiles_h = (out_height + tiling.tile_h - 1) / tiling.tile_h;
  return tiling;
}

struct ConvGeometry {
  int64_t planes;  // N * C
  int height, width, out_height, out_width;
  int stride_shift;  // stride = 1 << stride_shift
  int tile_planes, tile_h, tile_w;
  int tiles_w;
  int tiles_per_group;  // tiles of one group of tile_planes planes
  int64_t plane_groups;
};

// Several whole planes per tile when the planes are small. The caller checks that the sides fit
// in 31 bits / 4 and that make_conv_tiling's tiles per plane fit in 31 bits.
inline ConvGeometry make_conv_geometry(int64_t planes, int height, int width, int out_height,
                                       int out_width, int stride) {
  const ConvTiling tiling = make_conv_tiling(out_height, out_width);
  ConvGeometry geo;
  geo.planes = planes;
  geo.height = height;
  geo.width = width;
  geo.out_height = out_height;
  geo.out_width = out_width;
  geo.stride_shift = stride == 2 ? 1 : 0;
  geo.tile_w = tiling.tile_w;
  geo.tile_h = tiling.tile_h;
  const bool whole_planes = geo.tile_h == geo.out_height && geo.tile_w == geo.out_width;
  const int planes_per_tile = kThreadsPerBlock / (geo.tile_h * geo.tile_w);
  geo.tile_planes = whole_planes ? static_cast<int>(std::min<int64_t>(geo.planes, planes_per_tile))
                                 : 1;
  geo.tiles_w = tiling.tiles_w;
  geo.tiles_per_group = static_cast<int>(tiling.tiles_h * tiling.tiles_w);
  geo.plane_groups = (geo.planes + geo.tile_planes - 1) / geo.tile_planes;
  return geo;
}

inline int64_t num_tiles(const ConvGeometry& geo) {
  return geo.plane_groups * geo.tiles_per_group;
}

// A (planes, rows, cols) box of positions around a tile, the same for every tile.
struct BoxShape {
  int planes, rows, cols;
  int count() const { return planes * rows * cols; }
};

// Forward: the input window of a tile (halo and padding included).
inline BoxShape forward_window(const ConvGeometry& geo) {
  const int stride = 1 << geo.stride_shift;
  return {geo.tile_planes, (geo.tile_h - 1) * stride + 3, (geo.tile_w - 1) * stride + 3};
}

// Backward: the grad_out values a tile's owned positions read, held in shared memory.
inline BoxShape backward_dy_box(const ConvGeometry& geo) {
  return {geo.tile_planes, geo.tile_h + 2, geo.tile_w + 2};
}

// Backward: a superset of the padded input positions a tile owns.
inline BoxShape backward_owned_box(const ConvGeometry& geo) {
  const int stride = 1 << geo.stride_shift;
  return {geo.tile_planes, geo.tile_h * stride + 2, geo.tile_w * stride + 2};
}

// 1-D grid of kThreadsPerBlock threads, at most one wave of resident blocks looping over the
// tiles. Backward: one row of weight-gradient partial sums per block (num_partials = blocks).
struct ConvPlan {
  int64_t blocks;
  size_t smem_bytes;
};

template <typename BlocksPerSm>
ConvPlan plan_conv_grid(const ConvGeometry& geo, size_t smem_bytes, int sm_count,
                        BlocksPerSm&& blocks_per_sm) {
  return {std::min(num_tiles(geo), resident_blocks(sm_count, blocks_per_sm, smem_bytes)),
          smem_bytes};
}

// Forward shared memory: kNumTaps terms per tile output, in the compute type.
template <typename BlocksPerSm>
ConvPlan plan_kan_conv2d_forward(const ConvGeometry& geo, size_t opmath_bytes, int sm_count,
                                 BlocksPerSm&& blocks_per_sm) {
  const size_t smem_bytes = opmath_bytes * kNumTaps * geo.tile_planes * geo.tile_h * geo.tile_w;
  return plan_conv_grid(geo, smem_bytes, sm_count, blocks_per_sm);
}

// Backward shared memory: the dy box, in the compute type.
template <typename BlocksPerSm>
ConvPlan plan_kan_conv2d_backward(const ConvGeometry& geo, size_t opmath_bytes, int sm_count,
                                  BlocksPerSm&& blocks_per_sm) {
  const size_t smem_bytes = opmath_bytes * backward_dy_box(geo).count();
  return plan_conv_grid(geo, smem_bytes, sm_count, blocks_per_sm);
}

}  // namespace cuda
}  // namespace mmrkan
