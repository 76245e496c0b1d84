// CUDA kernels of the KAN convolution (kan-facts.md section 4).
//
// One 3x3 kernel W[p][f] is shared by all (n, c) planes: feature f = 0 is x (weight base_weight[p]),
// feature f = 1 + k is the basis function B_k(x) (weight poly_weight[p][k]). x is zero-padded
// FIRST, so a padded tap still contributes sum_k W[p][1 + k] * B_k(0).
//
// The outputs are cut into tiles of tile_planes x tile_h x tile_w (at most kThreadsPerBlock
// outputs; several whole planes per tile when the planes are small); a grid of resident blocks
// loops over the tiles.
//  * Forward: each input position of a tile's window (halo and padding included) is visited
//    once: its features are evaluated once, and for every (output, tap p) of the tile that reads
//    it, the term sum_f W[p][f] * feature_f goes to shared memory at [p][output]. Each output then
//    adds its 9 terms.
//  * Backward: the padded positions [-1, H] x [-1, W] of every plane are partitioned among the
//    tiles, and every (output, tap) pair reads exactly one of them. Visiting each owned position
//    once, with the grad_out values of the outputs that read it (a haloed tile in shared memory),
//    gives grad_x by gathering (no atomics) and each term of the weight gradients exactly once,
//    padded positions included. Weight gradients accumulate in registers, are summed per block in
//    a fixed order into one partial per block, and reduce_partials adds the partials in a fixed
//    order: deterministic.
// Strides 1 and 2 are handled as shifts and masks, so "does tap i of some output read this row"
// needs no division.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "../kan_ops.h"
#include "kan_cuda_utils.cuh"

namespace mmrkan {
namespace {

using at::cuda::detail::IntDivider;
using cuda::kThreadsPerBlock;

// Basis functions the kernels are compiled for (poly_weight.size(1)): Chebyshev degree <= 7.
constexpr int kMaxFunctions = 8;

constexpr int kChebyshev = static_cast<int>(KanBasis::kChebyshev);

// --use_fast_math (setup.py) turns tanhf into tanh.approx.f32, whose relative error (~5e-4) is far
// above fp32 rounding; expm1f keeps full accuracy, also near 0.
__device__ __forceinline__ float accurate_tanh(float v) {
  const float a = fminf(fabsf(v), 10.f);  // tanh(10) rounds to 1 in fp32; keeps expm1f finite
  const float e = expm1f(2.f * a);
  return copysignf(e / (e + 2.f), v);
}

__device__ __forceinline__ double accurate_tanh(double v) { return tanh(v); }

// feature = [x, B_0(x), ..., B_{K-1}(x)]: Chebyshev T_k(tanh x), or Gaussian bumps
// exp(-((x - c_k) / w)^2) with c_k = -1 + k w, w = 2 / (K - 1).
template <typename T, int kNumFunctions>
__device__ __forceinline__ void eval_features(T v, int basis, T (&feature)[kNumFunctions + 1]) {
  feature[0] = v;
  if (basis == kChebyshev) {
    const T t = accurate_tanh(v);
    feature[1] = T(1);
    if constexpr (kNumFunctions > 1) feature[2] = t;
#pragma unroll
    for (int k = 2; k < kNumFunctions; ++k) feature[1 + k] = T(2) * t * feature[k] - feature[k - 1];
  } else {
    const T inv_width = T(kNumFunctions - 1) / T(2);
#pragma unroll
    for (int k = 0; k < kNumFunctions; ++k) {
      const T u = (v + T(1)) * inv_width - T(k);  // (x - c_k) / w
      feature[1 + k] = exp(-u * u);
    }
  }
}

// eval_features plus slope[f] = d feature[f] / dx.
template <typename T, int kNumFunctions>
__device__ __forceinline__ void eval_features_and_slopes(T v, int basis,
                                                         T (&feature)[kNumFunctions + 1],
                                                         T (&slope)[kNumFunctions + 1]) {
  feature[0] = v;
  slope[0] = T(1);
  if (basis == kChebyshev) {
    const T t = accurate_tanh(v);
    const T dt_dx = T(1) - t * t;
    // dT_k/dt: T'_0 = 0, T'_1 = 1, T'_k = 2 T_{k-1} + 2t T'_{k-1} - T'_{k-2}; then times dt/dx.
    feature[1] = T(1);
    slope[1] = T(0);
    if constexpr (kNumFunctions > 1) {
      feature[2] = t;
      slope[2] = T(1);
    }
#pragma unroll
    for (int k = 2; k < kNumFunctions; ++k) {
      feature[1 + k] = T(2) * t * feature[k] - feature[k - 1];
      slope[1 + k] = T(2) * feature[k] + T(2) * t * slope[k] - slope[k - 1];
    }
#pragma unroll
    for (int k = 1; k < kNumFunctions; ++k) slope[1 + k] *= dt_dx;
  } else {
    const T inv_width = T(kNumFunctions - 1) / T(2);
#pragma unroll
    for (int k = 0; k < kNumFunctions; ++k) {
      const T u = (v + T(1)) * inv_width - T(k);
      feature[1 + k] = exp(-u * u);
      slope[1 + k] = T(-2) * u * inv_width * feature[1 + k];
    }
  }
}

template <typename T, int kNumFeatures>
__device__ __forceinline__ void load_weights(const T* __restrict__ base_weight,
                                             const T* __restrict__ poly_weight,
                                             T (&weight)[kNumTaps][kNumFeatures]) {
#pragma unroll
  for (int p = 0; p < kNumTaps; ++p) {
    weight[p][0] = base_weight[p];
#pragma unroll
    for (int f = 1; f < kNumFeatures; ++f) weight[p][f] = poly_weight[p * (kNumFeatures - 1) + f - 1];
  }
}

struct Tile {
  int64_t plane0;
  int planes, out_row0, out_col0, rows, cols;  // rows, cols, planes: clipped to the tensor
};

struct ConvGeometry {
  int64_t planes;  // N * C
  int height, width, out_height, out_width;
  int stride_shift;  // stride = 1 << stride_shift
  int tile_planes, tile_h, tile_w;
  int tiles_w;
  int tiles_per_group;  // tiles of one group of tile_planes planes
  int64_t plane_groups;
};

// Walks the tiles blockIdx.x, blockIdx.x + gridDim.x, ... as (plane group, tile in group)
// without 64-bit divisions.
struct TileCursor {
  int64_t group;
  int in_group;
  int64_t step_groups;
  int step_in_group;

  __device__ explicit TileCursor(const ConvGeometry& geo)
      : group(blockIdx.x / geo.tiles_per_group),
        in_group(blockIdx.x % geo.tiles_per_group),
        step_groups(gridDim.x / geo.tiles_per_group),
        step_in_group(gridDim.x % geo.tiles_per_group) {}

  __device__ bool valid(const ConvGeometry& geo) const { return group < geo.plane_groups; }

  __device__ void advance(const ConvGeometry& geo) {
    group += step_groups;
    in_group += step_in_group;
    if (in_group >= geo.tiles_per_group) {
      in_group -= geo.tiles_per_group;
      ++group;
    }
  }

  __device__ Tile tile(const ConvGeometry& geo) const {
    Tile t;
    t.plane0 = group * geo.tile_planes;
    t.planes = static_cast<int>(min(static_cast<int64_t>(geo.tile_planes), geo.planes - t.plane0));
    t.out_row0 = (in_group / geo.tiles_w) * geo.tile_h;
    t.out_col0 = (in_group % geo.tiles_w) * geo.tile_w;
    t.rows = min(geo.tile_h, geo.out_height - t.out_row0);
    t.cols = min(geo.tile_w, geo.out_width - t.out_col0);
    return t;
  }
};

// A (planes, rows, cols) box of a tile, the same for every tile, enumerated by a flat index.
struct TileBox {
  IntDivider<unsigned int> rows, cols;
  int count;

  __device__ void unflatten(int index, int& plane, int& row, int& col) const {
    const auto by_col = cols.divmod(static_cast<unsigned int>(index));
    const auto by_row = rows.divmod(by_col.div);
    col = static_cast<int>(by_col.mod);
    row = static_cast<int>(by_row.mod);
    plane = static_cast<int>(by_row.div);
  }
};

TileBox make_box(int planes, int rows, int cols) {
  TileBox box;
  box.rows = IntDivider<unsigned int>(rows);
  box.cols = IntDivider<unsigned int>(cols);
  box.count = planes * rows * cols;
  return box;
}

// window: tile_planes x ((tile_h - 1) s + 3) x ((tile_w - 1) s + 3) input positions, row 0 being
// input row out_row0 * s - 1. smem: kNumTaps x tile outputs.
template <typename scalar_t, typename opmath_t, int kNumFunctions>
__global__ void __launch_bounds__(kThreadsPerBlock)
    kan_conv2d_forward_kernel(const scalar_t* __restrict__ x,
                              const opmath_t* __restrict__ base_weight,
                              const opmath_t* __restrict__ poly_weight, scalar_t* __restrict__ y,
                              ConvGeometry geo, TileBox window, int basis) {
  constexpr int kNumFeatures = kNumFunctions + 1;
  extern __shared__ __align__(16) unsigned char smem[];
  opmath_t* tap_terms = reinterpret_cast<opmath_t*>(smem);

  opmath_t weight[kNumTaps][kNumFeatures];
  load_weights(base_weight, poly_weight, weight);
  const int stride = 1 << geo.stride_shift;
  const int parity_mask = stride - 1;
  const int64_t plane_size = static_cast<int64_t>(geo.height) * geo.width;
  const int tile_outputs = geo.tile_planes * geo.tile_h * geo.tile_w;
  // This thread's output, at the same place in every tile (tile_outputs <= kThreadsPerBlock).
  const int my_col = threadIdx.x % geo.tile_w;
  const int my_row = (threadIdx.x / geo.tile_w) % geo.tile_h;
  const int my_plane = threadIdx.x / (geo.tile_w * geo.tile_h);

  for (TileCursor cursor(geo); cursor.valid(geo); cursor.advance(geo)) {
    const Tile t = cursor.tile(geo);
    const int window_rows = (t.rows - 1) * stride + 3;
    const int window_cols = (t.cols - 1) * stride + 3;
    const int row0 = t.out_row0 * stride - 1;
    const int col0 = t.out_col0 * stride - 1;
    for (int index = threadIdx.x; index < window.count; index += kThreadsPerBlock) {
      int plane, wr, wc;
      window.unflatten(index, plane, wr, wc);
      if (plane >= t.planes || wr >= window_rows || wc >= window_cols) continue;
      const int r = row0 + wr;
      const int c = col0 + wc;
      opmath_t v = 0;
      if (r >= 0 && r < geo.height && c >= 0 && c < geo.width) {
        v = static_cast<opmath_t>(x[(t.plane0 + plane) * plane_size +
                                    static_cast<int64_t>(r) * geo.width + c]);
      }
      opmath_t feature[kNumFeatures];
      eval_features<opmath_t, kNumFunctions>(v, basis, feature);
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        // Tap row i of tile output row o reads window row o * s + i.
        const int dr = wr - i;
        if (dr < 0 || (dr & parity_mask) != 0 || (dr >> geo.stride_shift) >= t.rows) continue;
#pragma unroll
        for (int j = 0; j < 3; ++j) {
          const int dc = wc - j;
          if (dc < 0 || (dc & parity_mask) != 0 || (dc >> geo.stride_shift) >= t.cols) continue;
          opmath_t term = 0;
#pragma unroll
          for (int f = 0; f < kNumFeatures; ++f) term += weight[i * 3 + j][f] * feature[f];
          const int output = (plane * geo.tile_h + (dr >> geo.stride_shift)) * geo.tile_w +
                             (dc >> geo.stride_shift);
          tap_terms[(i * 3 + j) * tile_outputs + output] = term;
        }
      }
    }
    __syncthreads();
    if (my_plane < t.planes && my_row < t.rows && my_col < t.cols) {
      opmath_t sum = 0;
#pragma unroll
      for (int p = 0; p < kNumTaps; ++p) sum += tap_terms[p * tile_outputs + threadIdx.x];
      y[((t.plane0 + my_plane) * geo.out_height + t.out_row0 + my_row) * geo.out_width +
        t.out_col0 + my_col] = static_cast<scalar_t>(sum);
    }
    __syncthreads();  // tap_terms is rewritten for the next tile
  }
}

// dy_box: tile_planes x (tile_h + 2) x (tile_w + 2) outputs from (out_row0 - 1, out_col0 - 1),
// held in smem. owned_box: tile_planes x (tile_h s + 2) x (tile_w s + 2) positions from input
// (out_row0 s - 1, out_col0 s - 1), a superset of the positions the tile owns:
//   rows [out_row0 s, (out_row0 + rows) s), plus row -1 for the first tile row and every row up
//   to H for the last one (likewise for columns).
// partials: (gridDim.x, kNumTaps * kNumFeatures), [p][0] for base_weight, [p][1 + k] for
// poly_weight[p][k].
template <typename scalar_t, typename opmath_t, int kNumFunctions>
__global__ void __launch_bounds__(kThreadsPerBlock)
    kan_conv2d_backward_kernel(const scalar_t* __restrict__ grad_out,
                               const scalar_t* __restrict__ x,
                               const opmath_t* __restrict__ base_weight,
                               const opmath_t* __restrict__ poly_weight,
                               scalar_t* __restrict__ grad_x, opmath_t* __restrict__ partials,
                               ConvGeometry geo, TileBox dy_box, TileBox owned_box, int basis) {
  constexpr int kNumFeatures = kNumFunctions + 1;
  constexpr int kNumWeights = kNumTaps * kNumFeatures;
  extern __shared__ __align__(16) unsigned char smem[];
  opmath_t* dy_tile = reinterpret_cast<opmath_t*>(smem);
  __shared__ opmath_t warp_sums[cuda::kWarpsPerBlock][kNumWeights];

  opmath_t weight[kNumTaps][kNumFeatures];
  load_weights(base_weight, poly_weight, weight);
  opmath_t grad_weight[kNumTaps][kNumFeatures] = {};
  const int stride = 1 << geo.stride_shift;
  const int parity_mask = stride - 1;
  const int64_t plane_size = static_cast<int64_t>(geo.height) * geo.width;
  const int dy_rows = geo.tile_h + 2;
  const int dy_cols = geo.tile_w + 2;

  for (TileCursor cursor(geo); cursor.valid(geo); cursor.advance(geo)) {
    const Tile t = cursor.tile(geo);
    for (int index = threadIdx.x; index < dy_box.count; index += kThreadsPerBlock) {
      int plane, dr, dc;
      dy_box.unflatten(index, plane, dr, dc);
      const int oh = t.out_row0 - 1 + dr;
      const int ow = t.out_col0 - 1 + dc;
      opmath_t dy = 0;
      if (plane < t.planes && oh >= 0 && oh < geo.out_height && ow >= 0 && ow < geo.out_width) {
        dy = static_cast<opmath_t>(
            grad_out[((t.plane0 + plane) * geo.out_height + oh) * geo.out_width + ow]);
      }
      dy_tile[index] = dy;
    }
    __syncthreads();

    const bool last_row = t.out_row0 + t.rows == geo.out_height;
    const bool last_col = t.out_col0 + t.cols == geo.out_width;
    const int row0 = t.out_row0 * stride - 1;
    const int col0 = t.out_col0 * stride - 1;
    const int row_begin = t.out_row0 == 0 ? 0 : 1;
    const int col_begin = t.out_col0 == 0 ? 0 : 1;
    const int row_end = last_row ? geo.height + 1 - row0 : t.rows * stride + 1;
    const int col_end = last_col ? geo.width + 1 - col0 : t.cols * stride + 1;
    for (int index = threadIdx.x; index < owned_box.count; index += kThreadsPerBlock) {
      int plane, wr, wc;
      owned_box.unflatten(index, plane, wr, wc);
      if (plane >= t.planes || wr < row_begin || wr >= row_end || wc < col_begin ||
          wc >= col_end) {
        continue;
      }
      const int r = row0 + wr;
      const int c = col0 + wc;
      const bool inside = r >= 0 && r < geo.height && c >= 0 && c < geo.width;
      const int64_t offset = (t.plane0 + plane) * plane_size + static_cast<int64_t>(r) * geo.width + c;
      const opmath_t v = inside ? static_cast<opmath_t>(x[offset]) : opmath_t(0);
      opmath_t feature[kNumFeatures];
      opmath_t slope[kNumFeatures];
      eval_features_and_slopes<opmath_t, kNumFunctions>(v, basis, feature, slope);

      // dy[p]: grad_out of the output whose tap p reads this position (0 if none).
      opmath_t dy[kNumTaps];
      const opmath_t* dy_plane = dy_tile + plane * dy_rows * dy_cols;
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        // Output row out_row0 + o reads this position with tap row i iff o s = wr - i.
        const int dr = wr - i;
        const int tile_row = (dr >> geo.stride_shift) + 1;
        const bool row_ok = (dr & parity_mask) == 0 && tile_row >= 0 && tile_row < dy_rows;
#pragma unroll
        for (int j = 0; j < 3; ++j) {
          const int dc = wc - j;
          const int tile_col = (dc >> geo.stride_shift) + 1;
          const bool col_ok = (dc & parity_mask) == 0 && tile_col >= 0 && tile_col < dy_cols;
          dy[i * 3 + j] = row_ok && col_ok ? dy_plane[tile_row * dy_cols + tile_col] : opmath_t(0);
        }
      }

      opmath_t grad = 0;
#pragma unroll
      for (int f = 0; f < kNumFeatures; ++f) {
        opmath_t dy_weight = 0;
#pragma unroll
        for (int p = 0; p < kNumTaps; ++p) dy_weight += dy[p] * weight[p][f];
        grad += dy_weight * slope[f];
      }
#pragma unroll
      for (int p = 0; p < kNumTaps; ++p) {
#pragma unroll
        for (int f = 0; f < kNumFeatures; ++f) grad_weight[p][f] += dy[p] * feature[f];
      }
      if (inside) grad_x[offset] = static_cast<scalar_t>(grad);
    }
    __syncthreads();  // dy_tile is rewritten for the next tile
  }

  // Block sum in a fixed order: lanes by warp_reduce_sum, then warps in index order.
  const int warp = threadIdx.x / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
#pragma unroll
  for (int p = 0; p < kNumTaps; ++p) {
#pragma unroll
    for (int f = 0; f < kNumFeatures; ++f) {
      const opmath_t sum = cuda::warp_reduce_sum(grad_weight[p][f]);
      if (lane == 0) warp_sums[warp][p * kNumFeatures + f] = sum;
    }
  }
  __syncthreads();
  for (int k = threadIdx.x; k < kNumWeights; k += kThreadsPerBlock) {
    opmath_t sum = 0;
#pragma unroll
    for (int w = 0; w < cuda::kWarpsPerBlock; ++w) sum += warp_sums[w][k];
    partials[static_cast<int64_t>(blockIdx.x) * kNumWeights + k] = sum;
  }
}

// ceil(n / ceil(n / cap)): the largest tile size <= cap that splits n into equal-ish tiles.
int balanced_tile(int n, int cap) {
  const int tiles = (n + cap - 1) / cap;
  return (n + tiles - 1) / tiles;
}

ConvGeometry make_geometry(const at::Tensor& x, int64_t stride) {
  const int64_t max_side = std::numeric_limits<int32_t>::max() / 4;
  TORCH_CHECK(x.size(2) <= max_side && x.size(3) <= max_side,
              "kan_conv2d: spatial size too large for the CUDA kernel: ", x.sizes());
  ConvGeometry geo;
  geo.planes = x.size(0) * x.size(1);
  geo.height = static_cast<int>(x.size(2));
  geo.width = static_cast<int>(x.size(3));
  geo.out_height = static_cast<int>(kan_conv2d_output_size(geo.height, stride));
  geo.out_width = static_cast<int>(kan_conv2d_output_size(geo.width, stride));
  geo.stride_shift = stride == 2 ? 1 : 0;
  geo.tile_w = balanced_tile(geo.out_width, cuda::kWarpSize);
  geo.tile_h = balanced_tile(geo.out_height, std::max(1, kThreadsPerBlock / geo.tile_w));
  const bool whole_planes = geo.tile_h == geo.out_height && geo.tile_w == geo.out_width;
  geo.tile_planes = whole_planes
      ? static_cast<int>(std::min<int64_t>(geo.planes, kThreadsPerBlock / (geo.tile_h * geo.tile_w)))
      : 1;
  geo.tiles_w = (geo.out_width + geo.tile_w - 1) / geo.tile_w;
  const int64_t tiles_h = (geo.out_height + geo.tile_h - 1) / geo.tile_h;
  TORCH_CHECK(tiles_h * geo.tiles_w <= std::numeric_limits<int32_t>::max(),
              "kan_conv2d: spatial size too large for the CUDA kernel: ", x.sizes());
  geo.tiles_per_group = static_cast<int>(tiles_h * geo.tiles_w);
  geo.plane_groups = (geo.planes + geo.tile_planes - 1) / geo.tile_planes;
  return geo;
}

int64_t num_tiles(const ConvGeometry& geo) { return geo.plane_groups * geo.tiles_per_group; }

template <typename Kernel>
int64_t grid_size(Kernel kernel, const ConvGeometry& geo, size_t smem_bytes) {
  return std::min(num_tiles(geo), cuda::resident_blocks(kernel, kThreadsPerBlock, smem_bytes));
}

template <typename scalar_t, int kNumFunctions>
void launch_forward(const at::Tensor& x, const at::Tensor& base_weight,
                    const at::Tensor& poly_weight, const ConvGeometry& geo, int basis,
                    at::Tensor& y) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int stride = 1 << geo.stride_shift;
  const TileBox window = make_box(geo.tile_planes, (geo.tile_h - 1) * stride + 3,
                                  (geo.tile_w - 1) * stride + 3);
  const size_t smem_bytes =
      sizeof(opmath_t) * kNumTaps * geo.tile_planes * geo.tile_h * geo.tile_w;
  const auto kernel = kan_conv2d_forward_kernel<scalar_t, opmath_t, kNumFunctions>;
  const int64_t blocks = grid_size(kernel, geo, smem_bytes);
  kernel<<<static_cast<unsigned>(blocks), kThreadsPerBlock, smem_bytes,
           at::cuda::getCurrentCUDAStream()>>>(
      x.const_data_ptr<scalar_t>(), base_weight.const_data_ptr<opmath_t>(),
      poly_weight.const_data_ptr<opmath_t>(), y.mutable_data_ptr<scalar_t>(), geo, window, basis);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int kNumFunctions>
void launch_backward(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& base_weight, const at::Tensor& poly_weight,
                     const ConvGeometry& geo, int basis, at::Tensor& grad_x,
                     at::Tensor& grad_weights) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int kNumWeights = kNumTaps * (kNumFunctions + 1);
  const int stride = 1 << geo.stride_shift;
  const TileBox dy_box = make_box(geo.tile_planes, geo.tile_h + 2, geo.tile_w + 2);
  const TileBox owned_box =
      make_box(geo.tile_planes, geo.tile_h * stride + 2, geo.tile_w * stride + 2);
  const size_t smem_bytes = sizeof(opmath_t) * dy_box.count;
  const auto kernel = kan_conv2d_backward_kernel<scalar_t, opmath_t, kNumFunctions>;
  const int64_t blocks = grid_size(kernel, geo, smem_bytes);
  const auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor partials = at::empty({blocks, kNumWeights}, base_weight.options());
  kernel<<<static_cast<unsigned>(blocks), kThreadsPerBlock, smem_bytes, stream>>>(
      grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
      base_weight.const_data_ptr<opmath_t>(), poly_weight.const_data_ptr<opmath_t>(),
      grad_x.mutable_data_ptr<scalar_t>(), partials.mutable_data_ptr<opmath_t>(), geo, dy_box,
      owned_box, basis);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  cuda::reduce_partials(partials.const_data_ptr<opmath_t>(), blocks, 1, kNumWeights, 1, 1, 0,
                        kNumWeights, grad_weights.mutable_data_ptr<opmath_t>(), stream);
}

// Calls body.template operator()<kNumFunctions>() for the runtime number of basis functions.
template <typename Body>
void dispatch_num_functions(int64_t num_functions, Body&& body) {
  TORCH_CHECK(num_functions >= 1 && num_functions <= kMaxFunctions,
              "kan_conv2d: the CUDA kernels support 1 to ", kMaxFunctions,
              " basis functions (poly_weight.size(1), Chebyshev degree + 1), got ", num_functions);
  switch (num_functions) {
    case 1: body.template operator()<1>(); break;
    case 2: body.template operator()<2>(); break;
    case 3: body.template operator()<3>(); break;
    case 4: body.template operator()<4>(); break;
    case 5: body.template operator()<5>(); break;
    case 6: body.template operator()<6>(); break;
    case 7: body.template operator()<7>(); break;
    case 8: body.template operator()<8>(); break;
  }
}

at::Tensor kan_conv2d_forward_cuda(const at::Tensor& x, const at::Tensor& base_weight,
                                   const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  check_kan_conv2d_args(x, base_weight, poly_weight, stride, basis);
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), kan_conv2d_output_size(x.size(2), stride),
                            kan_conv2d_output_size(x.size(3), stride)},
                           x.options());
  if (y.numel() == 0) return y;
  const ConvGeometry geo = make_geometry(x, stride);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_forward_cuda", [&] {
    dispatch_num_functions(poly_weight.size(1), [&]<int kNumFunctions>() {
      launch_forward<scalar_t, kNumFunctions>(x, base_weight, poly_weight, geo,
                                              static_cast<int>(basis), y);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& base_weight,
    const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  check_kan_conv2d_args(x, base_weight, poly_weight, stride, basis);
  check_grad_out("kan_conv2d_backward", grad_out, x,
                 {x.size(0), x.size(1), kan_conv2d_output_size(x.size(2), stride),
                  kan_conv2d_output_size(x.size(3), stride)});
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  at::Tensor grad_x = at::empty_like(x);
  const int64_t num_features = 1 + poly_weight.size(1);
  // Column 0: base_weight's gradient, columns 1..K: poly_weight's.
  at::Tensor grad_weights = at::empty({kNumTaps, num_features}, base_weight.options());
  if (grad_out.numel() == 0) {
    grad_weights.zero_();
  } else {
    const ConvGeometry geo = make_geometry(x, stride);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                    "kan_conv2d_backward_cuda", [&] {
      dispatch_num_functions(poly_weight.size(1), [&]<int kNumFunctions>() {
        launch_backward<scalar_t, kNumFunctions>(grad_out, x, base_weight, poly_weight, geo,
                                                 static_cast<int>(basis), grad_x, grad_weights);
      });
    });
  }
  return {grad_x, grad_weights.select(1, 0).contiguous(),
          grad_weights.narrow(1, 1, num_features - 1).contiguous()};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CUDA, m) {
  m.impl("kan_conv2d_forward", &kan_conv2d_forward_cuda);
  m.impl("kan_conv2d_backward", &kan_conv2d_backward_cuda);
}

}  // namespace mmrkan
