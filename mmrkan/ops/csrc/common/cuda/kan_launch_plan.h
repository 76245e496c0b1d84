// Launch plans of mmrkan's CUDA kernels: grid, block, tiles, dynamic shared memory and number of
// partial sums, as host functions of the tensor shapes ONLY.
//
// Nothing here depends on the GPU (SM count, occupancy): a shape gives the same grid, the same
// partial sums and the same summation order on every GPU model, so forward and gradients are
// bitwise identical everywhere (and under every emulated GPU). Grids have many blocks, each a
// short fixed piece of work (several waves on an H200), so blocks waiting for an SM that another
// kernel holds (NCCL beside a backward pass) delay little. The launchers (csrc/cuda) check the
// plan against the device's shared memory limit. No ATen or CUDA runtime header (dim3 comes from
// nvcc or from the emulator).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kan_common_kernel.cuh"

namespace mmrkan {
namespace cuda {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ceil(n / ceil(n / cap)): the largest size <= cap that splits n into equal-ish pieces.
inline int64_t balanced_tile(int64_t n, int64_t cap) { return ceil_div(n, ceil_div(n, cap)); }

// n / d and n % d for a divisor d fixed at launch by a multiply-high, an add and a shift instead
// of a hardware division (Granlund and Montgomery, "Division by invariant integers using
// multiplication", PLDI 1994). Exact for n, d < 2^31.
struct FastDivider {
  unsigned divisor;
  unsigned magic;  // 2^32 (2^shift - d) / d + 1
  unsigned shift;  // ceil(log2 d)

  FastDivider() = default;

  explicit FastDivider(unsigned d) : divisor(d), shift(0) {
    while ((uint64_t(1) << shift) < d) ++shift;
    magic = static_cast<unsigned>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }

  __device__ __forceinline__ unsigned div(unsigned n) const {
    return (__umulhi(n, magic) + n) >> shift;
  }
};

// A (planes, rows, cols) box of positions, enumerated by a flat index.
struct Box {
  FastDivider rows, cols;
  int count;

  Box() = default;
  Box(int planes, int num_rows, int num_cols)
      : rows(static_cast<unsigned>(num_rows)),
        cols(static_cast<unsigned>(num_cols)),
        count(planes * num_rows * num_cols) {}

  __device__ __forceinline__ void unflatten(int index, int& plane, int& row, int& col) const {
    const unsigned by_col = cols.div(static_cast<unsigned>(index));
    const unsigned by_row = rows.div(by_col);
    col = index - static_cast<int>(by_col * cols.divisor);
    row = static_cast<int>(by_col - by_row * rows.divisor);
    plane = static_cast<int>(by_row);
  }
};

// ---- group_rational ----------------------------------------------------------------------------
//
// x is (rows, C), C = groups * group width. A thread column is kVec consecutive channels (one
// 16-byte access) or one channel. Each block works on ONE group: a slice of `slice_columns` of
// its columns, `rows_per_pass` rows at a time (slice_columns * rows_per_pass <= 256 threads), for
// `passes` passes over a chunk of rows. So a block sums the coefficient gradients of a single
// group, in registers then in a fixed order over its threads: one partial sum per block and
// coefficient, `num_blocks` of them, all fixed by the shape.

// Rows of a block (passes) are processed kRowsInFlight at a time: their loads are in flight
// together.
constexpr int kRowsInFlight = 2;
// About this many blocks (more for tall x: a grid y is at most 65535), at least kMinPasses
// passes each, so that the block's final sums (about 120 instructions per thread) stay small.
constexpr int64_t kRationalTargetBlocks = 1024;
constexpr int kRationalMinPasses = 4;

struct RationalLayout {
  int64_t rows;           // x.numel() / C
  int64_t channels;       // C
  int64_t groups;         // g
  int64_t group_columns;  // (C / g) / vec
  int vec;                // channels per thread column
  bool shared_numerator;  // numerator (1, m + 1) instead of (g, m + 1)
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
  layout.groups = groups;
  layout.group_columns = channels / groups / vec;
  layout.vec = vec;
  layout.shared_numerator = shared_numerator;
  return layout;
}

struct RationalPlan {
  dim3 grid;            // (groups * slices, row chunks)
  int slice_columns;    // columns of a block
  int slices;           // blocks across one group's columns
  int rows_per_pass;    // kThreadsPerBlock / slice_columns
  int passes;           // a multiple of kRowsInFlight
  int64_t chunk_rows;   // rows_per_pass * passes
  int64_t num_blocks;   // grid.x * grid.y: partial sums per coefficient
};

// The slice width: as wide as possible (a row's slice is one contiguous access of w vectors, and
// fewer blocks share a group), splitting the group into more slices only while that leaves over
// 10% of the 256 threads idle: w columns (w <= 256) in ceil(gc / w) slices, floor(256 / w) rows
// per pass.
inline int best_slice_columns(int64_t group_columns) {
  const int64_t min_slices = ceil_div(group_columns, kThreadsPerBlock);
  int best = 1;
  double best_use = -1;
  for (int64_t slices = min_slices; slices <= min_slices + 16; ++slices) {
    const int64_t w = ceil_div(group_columns, slices);
    const double use = static_cast<double>(group_columns) / (ceil_div(group_columns, w) * w) *
                       static_cast<double>(w * (kThreadsPerBlock / w)) / kThreadsPerBlock;
    if (use > best_use + 1e-9) {
      best_use = use;
      best = static_cast<int>(w);
    }
    if (use >= 0.9) break;
  }
  return best;
}

// The caller checks that grid.x fits in 31 bits.
inline RationalPlan plan_group_rational(const RationalLayout& layout) {
  RationalPlan plan;
  plan.slice_columns = best_slice_columns(layout.group_columns);
  plan.slices = static_cast<int>(ceil_div(layout.group_columns, plan.slice_columns));
  plan.rows_per_pass = kThreadsPerBlock / plan.slice_columns;
  const int64_t grid_x = layout.groups * plan.slices;
  const int64_t wanted_y = std::max<int64_t>(1, kRationalTargetBlocks / grid_x);
  int64_t passes = std::max<int64_t>(
      {kRationalMinPasses, ceil_div(layout.rows, plan.rows_per_pass * wanted_y),
       ceil_div(layout.rows, plan.rows_per_pass * int64_t{65535})});
  passes = ceil_div(passes, kRowsInFlight) * kRowsInFlight;
  plan.passes = static_cast<int>(passes);
  plan.chunk_rows = plan.rows_per_pass * passes;
  const int64_t grid_y = ceil_div(layout.rows, plan.chunk_rows);
  plan.grid = dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y));
  plan.num_blocks = grid_x * grid_y;
  return plan;
}

// ---- kan_conv2d --------------------------------------------------------------------------------
//
// The outputs of a (n, c) plane are cut into tiles of tile_h rows x tile_w columns; small planes
// go tile_planes whole planes to a tile. Thread t of a block owns one strip of `strip`
// consecutive outputs of a row of the tile: (plane, row, strip) = unflatten(t). A tile's input
// window (halo and zero padding included) is win_h x win_w positions per plane; its basis
// features live in shared memory, win_pitch 16-byte slots per row and position. Blocks take
// tiles_per_block consecutive tiles each.

// 3x3 window with zero padding 1, as in kan_ops.h.
constexpr int kNumTaps = 9;
// Shared memory of a tile (window, grad_out box, weights): at most this, so that five blocks fit
// on an sm_90 SM (228 KiB) and any CUDA GPU runs the plan (48 KiB per block without opt-in).
constexpr int64_t kConvSmemBudget = 40 * 1024;
// Blocks: about kConvTargetBlocks, each at least kConvMinTilesPerBlock tiles (backward: the
// block's final weight-gradient sums are amortised over its tiles).
constexpr int64_t kConvTargetBlocks = 1024;
// Output strips per tile row (2 * 31 + 2 window columns at most, for either stride).
constexpr int kMaxStrips = 31;

struct ConvGeometry {
  int64_t planes;  // N * C
  int height, width, out_height, out_width;
  int stride;
  int strip;  // outputs per thread along a row
  int tile_planes, tile_h, tile_w, strips_w;  // tile_w = strips_w * strip
  int tiles_w, tiles_h;
  int64_t plane_groups;
  int64_t num_tiles;
  int64_t tiles_per_block;
  int64_t blocks;
  // Window of a tile in shared memory: tile_planes x win_h rows (the planes' rows one after the
  // other) of win_w positions, in rows of win_pitch = 2^pitch_shift slots (so that a thread
  // evaluating the window keeps one column: kThreadsPerBlock is a multiple of the pitch). With
  // parity_split the even columns come first, then the odd ones (half_pitch each), so that the
  // threads of a warp read consecutive slots at stride 2.
  int win_h, win_w, win_pitch, pitch_shift, half_pitch;
  bool parity_split;
  int position_bytes;  // features of one position: a multiple of 16
  FastDivider win_rows;  // win_h
  // A thread's next window row is kThreadsPerBlock / win_pitch rows on. If that is a whole
  // number of planes' windows (planes_per_step > 0), it is the same row of the next
  // planes_per_step planes' windows, step_offset elements of x on. Else step_rows rows (and
  // whole planes) on, step_offset elements (wrap_offset more when a plane ends).
  int planes_per_step, step_rows;
  int64_t step_offset, wrap_offset;
  Box dy_box;          // backward: tile_planes x (tile_h + 2) x (tile_w + 2) grad_out values
  size_t window_bytes, dy_bytes, weight_bytes;
  size_t smem_bytes;

  __host__ __device__ int window_rows() const { return tile_planes * win_h; }
};

// position_bytes: features of one window position; dy_element_bytes: 0 for the forward, the
// compute type's size for the backward; weight_bytes: the weights kept in shared memory. The
// caller checks the sizes against 31 bits (kan_conv2d_launcher.h).
inline ConvGeometry make_conv_geometry(int64_t planes, int height, int width, int stride,
                                       int strip, int position_bytes, int dy_element_bytes,
                                       size_t weight_bytes, int64_t min_tiles_per_block) {
  ConvGeometry geo;
  geo.planes = planes;
  geo.height = height;
  geo.width = width;
  geo.out_height = (height - 1) / stride + 1;
  geo.out_width = (width - 1) / stride + 1;
  geo.stride = stride;
  geo.strip = strip;
  geo.position_bytes = position_bytes;
  geo.parity_split = stride * strip == 2;
  geo.weight_bytes = weight_bytes;

  // At most kMaxStrips strips per row: then a window row is at most 64 positions, a pitch of 64.
  const int64_t strips_total = ceil_div(geo.out_width, strip);
  geo.strips_w = static_cast<int>(strips_total > kMaxStrips ? balanced_tile(strips_total, kMaxStrips)
                                                            : strips_total);
  geo.tile_w = geo.strips_w * strip;
  int64_t tile_h = balanced_tile(geo.out_height, std::max(1, kThreadsPerBlock / geo.strips_w));
  const bool whole_rows = geo.strips_w == strips_total;
  int64_t tile_planes =
      whole_rows && tile_h == geo.out_height
          ? std::min<int64_t>(planes, kThreadsPerBlock / (tile_h * geo.strips_w))
          : 1;
  // Shrink the tile until its shared memory fits the budget (planes first, then rows).
  for (;;) {
    geo.tile_h = static_cast<int>(tile_h);
    geo.tile_planes = static_cast<int>(tile_planes);
    geo.win_h = (geo.tile_h - 1) * stride + 3;
    geo.win_w = (geo.tile_w - 1) * stride + 3;
    geo.pitch_shift = 0;
    while ((1 << geo.pitch_shift) < geo.win_w) ++geo.pitch_shift;
    geo.win_pitch = 1 << geo.pitch_shift;
    geo.half_pitch = geo.win_pitch / 2;
    geo.window_bytes = static_cast<size_t>(geo.tile_planes) * geo.win_h * geo.win_pitch *
                       static_cast<size_t>(position_bytes);
    geo.dy_bytes = static_cast<size_t>(geo.tile_planes) * (geo.tile_h + 2) * (geo.tile_w + 2) *
                   static_cast<size_t>(dy_element_bytes);
    // The backward's grad_out tile and window are used in turn, in the same memory.
    geo.smem_bytes = std::max(geo.window_bytes, geo.dy_bytes) + geo.weight_bytes;
    if (geo.smem_bytes <= static_cast<size_t>(kConvSmemBudget) || (tile_planes == 1 && tile_h == 1)) {
      break;
    }
    if (tile_planes > 1) {
      tile_planes = ceil_div(tile_planes, 2);
    } else {
      tile_h = ceil_div(tile_h, 2);
    }
  }
  geo.win_rows = FastDivider(static_cast<unsigned>(geo.win_h));
  const int row_step = kThreadsPerBlock / geo.win_pitch;
  const int64_t plane_size = static_cast<int64_t>(height) * width;
  geo.planes_per_step = geo.tile_planes > 1 ? row_step / geo.win_h : 0;
  if (geo.planes_per_step > 0) {
    geo.step_rows = 0;
    geo.step_offset = geo.planes_per_step * plane_size;
  } else {
    geo.step_rows = row_step % geo.win_h;
    geo.step_offset =
        static_cast<int64_t>(geo.step_rows) * width + (row_step / geo.win_h) * plane_size;
  }
  geo.wrap_offset = plane_size - static_cast<int64_t>(geo.win_h) * width;
  geo.dy_box = Box(geo.tile_planes, geo.tile_h + 2, geo.tile_w + 2);
  geo.tiles_w = static_cast<int>(ceil_div(geo.out_width, geo.tile_w));
  geo.tiles_h = static_cast<int>(ceil_div(geo.out_height, geo.tile_h));
  geo.plane_groups = ceil_div(planes, geo.tile_planes);
  geo.num_tiles = geo.plane_groups * geo.tiles_w * geo.tiles_h;
  geo.tiles_per_block =
      std::max(min_tiles_per_block, ceil_div(geo.num_tiles, kConvTargetBlocks));
  geo.blocks = ceil_div(geo.num_tiles, geo.tiles_per_block);
  return geo;
}

// ---- kan_conv2d, per-window normalisations ------------------------------------------------------
//
// One output (and, in the backward, one input position) per thread and step: block b takes the
// `chunk` outputs and input positions from b chunk on, chunk a multiple of 256 chosen so that
// there are about kConvTargetBlocks blocks (the backward's partial sums per block).
struct WindowPlan {
  int height, width, out_height, out_width;
  int64_t outputs, inputs;  // planes * out_height * out_width, planes * height * width
  int64_t chunk;
  int64_t blocks;
};

inline WindowPlan make_window_plan(int64_t planes, int height, int width, int stride,
                                   bool backward) {
  WindowPlan plan;
  plan.height = height;
  plan.width = width;
  plan.out_height = (height - 1) / stride + 1;
  plan.out_width = (width - 1) / stride + 1;
  plan.outputs = planes * plan.out_height * plan.out_width;
  plan.inputs = planes * height * width;
  const int64_t work = backward ? std::max(plan.outputs, plan.inputs) : plan.outputs;
  plan.chunk = ceil_div(std::max<int64_t>(ceil_div(work, kConvTargetBlocks), kThreadsPerBlock),
                        kThreadsPerBlock) * kThreadsPerBlock;
  plan.blocks = ceil_div(work, plan.chunk);
  return plan;
}

}  // namespace cuda
}  // namespace mmrkan
