// CUDA kernels of the KAN convolution (docs/ops.md).
//
// One 3x3 kernel W[p][f] is shared by all (n, c) planes: feature f = 0 is x (weight base_weight[p]),
// feature f = 1 + k is the basis function B_k(x) (weight poly_weight[p][k]). x is zero-padded
// FIRST, so a padded tap still contributes sum_k W[p][1 + k] * B_k(0).
//
// The outputs are cut into tiles of tile_planes x tile_h x tile_w (at most kThreadsPerBlock
// outputs; several whole planes per tile when the planes are small); a grid of resident blocks
// loops over the tiles (kan_launch_plan.h).
//  * Forward: each input position of a tile's window (halo and padding included) is visited
//    once: its features are evaluated once, and for every (output, tap p) of the tile that reads
//    it, the term sum_f W[p][f] * feature_f goes to shared memory at [p][output]. Each output then
//    adds its 9 terms.
//  * Backward: the padded positions [-1, H] x [-1, W] of every plane are partitioned among the
//    tiles, and every (output, tap) pair reads exactly one of them. Visiting each owned position
//    once, with the grad_out values of the outputs that read it (a haloed tile in shared memory),
//    gives grad_x by gathering (no atomics) and each term of the weight gradients exactly once,
//    padded positions included. Weight gradients accumulate in registers, are summed per block in
//    a fixed order into one partial per block, and reduce_partials_kernel adds the partials in a
//    fixed order: deterministic.
// Strides 1 and 2 are handled as shifts and masks, so "does tap i of some output read this row"
// needs no division.
#pragma once

#include <cstdint>

#include "kan_common_kernel.cuh"
#include "kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

// Basis functions the kernels are compiled for (poly_weight.size(1)): Chebyshev degree <= 7.
constexpr int kMaxFunctions = 8;

// The `basis` argument: 0 Chebyshev, 1 rbf (KanBasis in kan_ops.h).
constexpr int kChebyshev = 0;

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

// A (planes, rows, cols) box of a tile (BoxShape), enumerated by a flat index.
struct TileBox {
  FastDivider rows, cols;
  int count;

  __device__ void unflatten(int index, int& plane, int& row, int& col) const {
    const unsigned by_col = cols.div(static_cast<unsigned>(index));
    const unsigned by_row = rows.div(by_col);
    col = index - static_cast<int>(by_col * cols.divisor);
    row = static_cast<int>(by_col - by_row * rows.divisor);
    plane = static_cast<int>(by_row);
  }
};

inline TileBox make_box(const BoxShape& shape) {
  TileBox box;
  box.rows = FastDivider(static_cast<unsigned>(shape.rows));
  box.cols = FastDivider(static_cast<unsigned>(shape.cols));
  box.count = shape.count();
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
  MMRKAN_DYNAMIC_SMEM(unsigned char, smem);
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
  MMRKAN_DYNAMIC_SMEM(unsigned char, smem);
  opmath_t* dy_tile = reinterpret_cast<opmath_t*>(smem);
  MMRKAN_SHARED_ARRAY(opmath_t, warp_sums, [kWarpsPerBlock][kNumWeights]);

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
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int p = 0; p < kNumTaps; ++p) {
#pragma unroll
    for (int f = 0; f < kNumFeatures; ++f) {
      const opmath_t sum = warp_reduce_sum(grad_weight[p][f]);
      if (lane == 0) warp_sums[warp][p * kNumFeatures + f] = sum;
    }
  }
  __syncthreads();
  for (int k = threadIdx.x; k < kNumWeights; k += kThreadsPerBlock) {
    opmath_t sum = 0;
#pragma unroll
    for (int w = 0; w < kWarpsPerBlock; ++w) sum += warp_sums[w][k];
    partials[static_cast<int64_t>(blockIdx.x) * kNumWeights + k] = sum;
  }
}

}  // namespace cuda
}  // namespace mmrkan
