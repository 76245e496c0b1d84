// CUDA kernels of the KAN convolution (docs/ops.md).
//
// One 3x3 kernel W[p][f] is shared by all (n, c) planes: feature f = 0 is x (weight
// base_weight[p]), the others are the basis functions B_k(x) (weights poly_weight[p][k]). x is
// zero-padded FIRST, so a padded tap still contributes sum_k W[p][1 + k] B_k(0).
//
// Built around the outputs (tiles and plans: kan_launch_plan.h):
//  * Per tile, the basis family evaluates the features of every input position of the tile's
//    window (halo and padding included) ONCE, into shared memory (16-byte chunks per position).
//  * Thread t owns a strip of `kStrip` outputs of one row; the 3 x ((kStrip - 1) s + 3) window
//    positions it reads are unrolled, every tap a compile-time offset. The weights are in shared
//    memory (read as broadcasts).
//  * Backward: each thread accumulates the weight gradients of its outputs in registers (one
//    accumulator per (tap, feature), padded taps included since the window holds them), and
//    computes dx for the input positions of its outputs' "cells" (the s x s positions
//    [s a, s a + s) x [s c, s c + s) of output (a, c); they partition the input): a gather over
//    only the taps that reach each position (1, 2, 2 or 4 of them at stride 2, for the four
//    parities). At the end, the block's sums go to one partial per block, and the block that
//    finishes last adds the partials in a fixed order (arrive_last): deterministic, one launch.
//  * Stride, basis family and number of functions are template parameters of the
//    specialisations the defaults run; RuntimeBasis covers every other family/count in one
//    instantiation per dtype and stride (kan_conv2d_launcher.h, docs/ops.md).
#pragma once

#include <cstdint>

#include "kan_common_kernel.cuh"
#include "kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

// Basis functions the kernels support (poly_weight.size(1)): Chebyshev degree <= 7.
constexpr int kMaxFunctions = 8;

// The `basis` argument: 0 Chebyshev, 1 rbf (KanBasis in kan_ops.h).
constexpr int kChebyshev = 0;

// ---- Basis families ----------------------------------------------------------------------------
//
// A family is a small functor, a kernel argument:
//   kStored             features kept per input position; feature 0 is x itself
//   kConstant           true if a function equal to 1 everywhere (padding included) is folded
//                       out of the stored features (Chebyshev T_0): its weights add up to a
//                       constant, and its weight gradient is the sum of grad_out
//   kMinBlocksPerSm     __launch_bounds__ occupancy target (registers <= 64 for 4)
//   functions()         K, the columns of poly_weight
//   stored()            features in use (<= kStored)
//   poly_column(s)      the poly_weight column of stored feature s >= 1
//   eval(v, f)          f[0..kStored) at input value v
//   chain(f, g)         sum_s g[s] d f[s] / dx, from the stored features

// T_k(tanh x), k < K: stores x, T_1..T_{K-1} (t = T_1 = f[1]).
template <int kFunctions>
struct ChebyshevBasis {
  static_assert(kFunctions >= 1 && kFunctions <= kMaxFunctions, "1 to 8 Chebyshev functions");
  static constexpr int kStored = kFunctions;
  static constexpr bool kConstant = true;
  static constexpr int kMinBlocksPerSm = 4;

  __device__ __host__ int functions() const { return kFunctions; }
  __device__ __host__ int stored() const { return kStored; }
  __device__ __host__ static int poly_column(int s) { return s; }

  template <typename T>
  __device__ __forceinline__ void eval(T v, T (&f)[kStored]) const {
    f[0] = v;
    if constexpr (kStored > 1) {
      const T t = fast_tanh(v);
      f[1] = t;
      T previous = T(1);
#pragma unroll
      for (int k = 2; k < kStored; ++k) {
        f[k] = T(2) * t * f[k - 1] - previous;
        previous = f[k - 1];
      }
    }
  }

  // dT_k/dx = k U_{k-1}(t) (1 - t^2), U the Chebyshev polynomials of the second kind.
  template <typename T>
  __device__ __forceinline__ T chain(const T (&f)[kStored], const T (&g)[kStored]) const {
    if constexpr (kStored == 1) {
      return g[0];
    } else {
      const T t = f[1];
      T u_previous = T(0), u = T(1), sum = T(0);
#pragma unroll
      for (int k = 1; k < kStored; ++k) {
        sum += T(k) * g[k] * u;
        const T u_next = T(2) * t * u - u_previous;
        u_previous = u;
        u = u_next;
      }
      return g[0] + sum * (T(1) - t * t);
    }
  }
};

// Any basis code and K <= kMaxFunctions, chosen at run time: stores x, B_0..B_{K-1} (zeros
// beyond). One instantiation per dtype and stride for everything the specialisations do not
// cover.
struct RuntimeBasis {
  static constexpr int kStored = kMaxFunctions + 1;
  static constexpr bool kConstant = false;
  static constexpr int kMinBlocksPerSm = 1;

  int basis;
  int num_functions;

  __device__ __host__ int functions() const { return num_functions; }
  __device__ __host__ int stored() const { return num_functions + 1; }
  __device__ __host__ static int poly_column(int s) { return s - 1; }

  template <typename T>
  __device__ __forceinline__ void eval(T v, T (&f)[kStored]) const {
    f[0] = v;
    if (basis == kChebyshev) {
      const T t = fast_tanh(v);
      T previous = T(1), current = t;
      f[1] = T(1);
#pragma unroll
      for (int k = 1; k < kMaxFunctions; ++k) {
        f[1 + k] = k < num_functions ? current : T(0);
        const T next = T(2) * t * current - previous;
        previous = current;
        current = next;
      }
    } else {
      // Gaussian bumps: centres -1 + k w, width w = 2 / (K - 1), no tanh.
      const T inv_width = T(num_functions - 1) / T(2);
#pragma unroll
      for (int k = 0; k < kMaxFunctions; ++k) {
        const T u = (v + T(1)) * inv_width - T(k);
        f[1 + k] = k < num_functions ? fast_exp(-u * u) : T(0);
      }
    }
  }

  template <typename T>
  __device__ __forceinline__ T chain(const T (&f)[kStored], const T (&g)[kStored]) const {
    T sum = T(0);
    if (basis == kChebyshev) {
      const T t = f[2];  // T_1 (0 when K = 1, unused then)
      T u_previous = T(0), u = T(1);
#pragma unroll
      for (int k = 1; k < kMaxFunctions; ++k) {
        if (k < num_functions) sum += T(k) * g[1 + k] * u;
        const T u_next = T(2) * t * u - u_previous;
        u_previous = u;
        u = u_next;
      }
      sum *= T(1) - t * t;
    } else {
      const T inv_width = T(num_functions - 1) / T(2);
#pragma unroll
      for (int k = 0; k < kMaxFunctions; ++k) {
        const T u = (f[0] + T(1)) * inv_width - T(k);
        if (k < num_functions) sum += g[1 + k] * (T(-2) * inv_width * u) * f[1 + k];
      }
    }
    return g[0] + sum;
  }
};

// ---- Shared memory layout ----------------------------------------------------------------------

template <typename T>
struct FeatureLayout {
  static constexpr int kPerChunk = kVectorBytes / static_cast<int>(sizeof(T));
  using Chunk = Pack<T, kPerChunk>;
};

template <typename T, int kStored>
struct Features {
  using Chunk = typename FeatureLayout<T>::Chunk;
  static constexpr int kPerChunk = FeatureLayout<T>::kPerChunk;
  static constexpr int kChunks = (kStored + kPerChunk - 1) / kPerChunk;

  __device__ __forceinline__ static void load(const Chunk* src, T (&f)[kStored]) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const Chunk chunk = src[c];
#pragma unroll
      for (int i = 0; i < kPerChunk; ++i) {
        if (c * kPerChunk + i < kStored) f[c * kPerChunk + i] = chunk.val[i];
      }
    }
  }

  __device__ __forceinline__ static void store(Chunk* dst, const T (&f)[kStored]) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      Chunk chunk;
#pragma unroll
      for (int i = 0; i < kPerChunk; ++i) {
        chunk.val[i] = c * kPerChunk + i < kStored ? f[c * kPerChunk + i] : T(0);
      }
      dst[c] = chunk;
    }
  }
};

// Slot of window column `col` in a row (ConvGeometry::parity_split, which the launcher sets to
// kStride * kStrip == 2).
template <int kStride, int kStrip>
__device__ __forceinline__ int window_slot(const ConvGeometry& geo, int col) {
  if constexpr (kStride * kStrip == 2) {
    return (col & 1) * geo.half_pitch + (col >> 1);
  } else {
    return col;
  }
}

// Weights W[p][s] in shared memory as kChunks chunks per tap, zeros past basis.stored(); returns
// the sum of the folded constant function's weights (0 without one). Every thread calls it; the
// caller synchronises before the first read.
template <typename T, typename Basis>
__device__ __forceinline__ T load_weights(const T* __restrict__ base_weight,
                                          const T* __restrict__ poly_weight, const Basis& basis,
                                          typename FeatureLayout<T>::Chunk* weights) {
  using F = Features<T, Basis::kStored>;
  T* flat = reinterpret_cast<T*>(weights);
  const int functions = basis.functions();
  for (int i = threadIdx.x; i < kNumTaps * F::kChunks * F::kPerChunk; i += kThreadsPerBlock) {
    const int p = i / (F::kChunks * F::kPerChunk);
    const int s = i % (F::kChunks * F::kPerChunk);
    T w = T(0);
    if (s == 0) {
      w = base_weight[p];
    } else if (s < basis.stored()) {
      w = poly_weight[p * functions + Basis::poly_column(s)];
    }
    flat[i] = w;
  }
  T constant = T(0);
  if constexpr (Basis::kConstant) {
#pragma unroll
    for (int p = 0; p < kNumTaps; ++p) constant += __ldg(poly_weight + p * functions);
  }
  return constant;
}

// The thread's strip: plane q, row a, strip sb of the tile (the same in every tile).
struct StripOwner {
  int plane, row, strip;
  bool active;

  __device__ explicit StripOwner(const ConvGeometry& geo) {
    strip = static_cast<int>(threadIdx.x % geo.strips_w);
    row = static_cast<int>(threadIdx.x / geo.strips_w % geo.tile_h);
    plane = static_cast<int>(threadIdx.x / (geo.strips_w * geo.tile_h));
    active = plane < geo.tile_planes;
  }
};

// Walks this block's consecutive tiles (plane group, tile row, tile column) without divisions.
// Tile counts fit in 31 bits (kan_conv2d_launcher.h checks).
struct TileCursor {
  int tile, end, group, tile_row, tile_col;

  __device__ explicit TileCursor(const ConvGeometry& geo) {
    tile = static_cast<int>(blockIdx.x * geo.tiles_per_block);
    end = static_cast<int>(min(geo.num_tiles, tile + geo.tiles_per_block));
    const int per_group = geo.tiles_w * geo.tiles_h;
    group = tile / per_group;
    const int in_group = tile - group * per_group;
    tile_row = in_group / geo.tiles_w;
    tile_col = in_group % geo.tiles_w;
  }

  __device__ bool valid() const { return tile < end; }

  __device__ void advance(const ConvGeometry& geo) {
    ++tile;
    if (++tile_col == geo.tiles_w) {
      tile_col = 0;
      if (++tile_row == geo.tiles_h) {
        tile_row = 0;
        ++group;
      }
    }
  }

  __device__ int64_t plane0(const ConvGeometry& geo) const {
    return static_cast<int64_t>(group) * geo.tile_planes;
  }
  __device__ int out_row0(const ConvGeometry& geo) const { return tile_row * geo.tile_h; }
  __device__ int out_col0(const ConvGeometry& geo) const { return tile_col * geo.tile_w; }
};

// Evaluates the features of the tile's window into shared memory (every thread; the caller
// synchronises before reading). Positions outside x (padding, or past the last plane) hold the
// features of 0.
template <typename scalar_t, typename opmath_t, typename Basis, int kStride, int kStrip>
__device__ __forceinline__ void evaluate_window(const scalar_t* __restrict__ x,
                                                const ConvGeometry& geo, const Basis& basis,
                                                const TileCursor& cursor,
                                                typename FeatureLayout<opmath_t>::Chunk* window) {
  using F = Features<opmath_t, Basis::kStored>;
  const int64_t plane0 = cursor.plane0(geo);
  const int row_origin = cursor.out_row0(geo) * geo.stride - 1;
  const int col_origin = cursor.out_col0(geo) * geo.stride - 1;
  const int64_t plane_size = static_cast<int64_t>(geo.height) * geo.width;
#pragma unroll 1
  for (int index = threadIdx.x; index < geo.window.count; index += kThreadsPerBlock) {
    int q, wr, wc;
    geo.window.unflatten(index, q, wr, wc);
    const int r = row_origin + wr;
    const int c = col_origin + wc;
    opmath_t v = opmath_t(0);
    if (plane0 + q < geo.planes && static_cast<unsigned>(r) < static_cast<unsigned>(geo.height) &&
        static_cast<unsigned>(c) < static_cast<unsigned>(geo.width)) {
      v = static_cast<opmath_t>(
          x[(plane0 + q) * plane_size + static_cast<int64_t>(r) * geo.width + c]);
    }
    opmath_t f[Basis::kStored];
    basis.eval(v, f);
    F::store(window + ((q * geo.win_h + wr) * geo.win_pitch +
                       window_slot<kStride, kStrip>(geo, wc)) *
                          F::kChunks,
             f);
  }
}

// sum_s W[p][s] f[s]
template <typename T, int kStored>
__device__ __forceinline__ T dot_weights(const typename FeatureLayout<T>::Chunk* w,
                                         const T (&f)[kStored]) {
  T wf[kStored];
  Features<T, kStored>::load(w, wf);
  T sum = T(0);
#pragma unroll
  for (int s = 0; s < kStored; ++s) sum += wf[s] * f[s];
  return sum;
}

// Window slot (relative to the strip's first column) of strip column offset j: a compile-time
// offset plus, with the parity split, j's half.
template <int kStride, int kStrip>
__device__ __forceinline__ int strip_slot(const ConvGeometry& geo, int strip, int j) {
  constexpr int kStripPitch = kStride * kStrip;
  if constexpr (kStripPitch == 2) {
    return (j & 1) * geo.half_pitch + strip + (j >> 1);
  } else {
    return strip * kStripPitch + j;
  }
}

// y: (planes, out_height, out_width).
template <typename scalar_t, typename opmath_t, typename Basis, int kStride, int kStrip>
__global__ void __launch_bounds__(kThreadsPerBlock, Basis::kMinBlocksPerSm)
    kan_conv2d_forward_kernel(const scalar_t* __restrict__ x,
                              const opmath_t* __restrict__ base_weight,
                              const opmath_t* __restrict__ poly_weight, scalar_t* __restrict__ y,
                              ConvGeometry geo, Basis basis) {
  using F = Features<opmath_t, Basis::kStored>;
  using Chunk = typename F::Chunk;
  constexpr int kSpan = (kStrip - 1) * kStride + 3;  // window columns a strip reads
  MMRKAN_DYNAMIC_SMEM(unsigned char, smem);  // one type for every instantiation
  Chunk* weights = reinterpret_cast<Chunk*>(smem);
  Chunk* window = weights + kNumTaps * F::kChunks;
  const opmath_t constant = load_weights(base_weight, poly_weight, basis, weights);
  const StripOwner owner(geo);

  for (TileCursor cursor(geo); cursor.valid(); cursor.advance(geo)) {
    evaluate_window<scalar_t, opmath_t, Basis, kStride, kStrip>(x, geo, basis, cursor, window);
    __syncthreads();
    const int64_t plane = cursor.plane0(geo) + owner.plane;
    const int out_row = cursor.out_row0(geo) + owner.row;
    const int out_col = cursor.out_col0(geo) + owner.strip * kStrip;
    if (owner.active && plane < geo.planes && out_row < geo.out_height &&
        out_col < geo.out_width) {
      opmath_t acc[kStrip];
#pragma unroll
      for (int o = 0; o < kStrip; ++o) acc[o] = constant;
      // One tap row at a time: its loads in flight together, without holding all 9 taps'
      // features and weights in registers.
#pragma unroll 1
      for (int i = 0; i < 3; ++i) {
        const Chunk* row =
            window + ((owner.plane * geo.win_h + owner.row * kStride + i) * geo.win_pitch) *
                         F::kChunks;
#pragma unroll
        for (int j = 0; j < kSpan; ++j) {
          opmath_t f[Basis::kStored];
          F::load(row + strip_slot<kStride, kStrip>(geo, owner.strip, j) * F::kChunks, f);
#pragma unroll
          for (int o = 0; o < kStrip; ++o) {
            const int tap_col = j - o * kStride;
            if (tap_col >= 0 && tap_col < 3) {
              acc[o] += dot_weights<opmath_t>(weights + (i * 3 + tap_col) * F::kChunks, f);
            }
          }
        }
      }
      scalar_t* out = y + (plane * geo.out_height + out_row) * geo.out_width + out_col;
#pragma unroll
      for (int o = 0; o < kStrip; ++o) {
        if (out_col + o < geo.out_width) out[o] = static_cast<scalar_t>(acc[o]);
      }
    }
    __syncthreads();  // the window is rewritten for the next tile
  }
}

// Number of weight-gradient sums of a family: one per (tap, stored feature), plus the constant's.
template <typename Basis>
constexpr int num_weight_sums() {
  return kNumTaps * Basis::kStored + (Basis::kConstant ? 1 : 0);
}

// Tap index along one axis by which output a + d reads position s a + 1 + e of the window
// (e < s: the position's place in its output's cell), or -1 if it does not.
template <int kStride>
__device__ __forceinline__ constexpr int reaching_tap(int e, int d) {
  return 1 + e - kStride * d >= 0 && 1 + e - kStride * d <= 2 ? 1 + e - kStride * d : -1;
}

// partials: (num_weight_sums<Basis>(), gridDim.x); counter: cleared by the launcher.
// grad_poly_weight: (9, K).
template <typename scalar_t, typename opmath_t, typename Basis, int kStride, int kStrip>
__global__ void __launch_bounds__(kThreadsPerBlock, Basis::kMinBlocksPerSm)
    kan_conv2d_backward_kernel(const scalar_t* __restrict__ grad_out,
                               const scalar_t* __restrict__ x,
                               const opmath_t* __restrict__ base_weight,
                               const opmath_t* __restrict__ poly_weight,
                               scalar_t* __restrict__ grad_x,
                               opmath_t* __restrict__ grad_base_weight,
                               opmath_t* __restrict__ grad_poly_weight,
                               opmath_t* __restrict__ partials, unsigned* __restrict__ counter,
                               ConvGeometry geo, Basis basis) {
  using F = Features<opmath_t, Basis::kStored>;
  using Chunk = typename F::Chunk;
  constexpr int kStored = Basis::kStored;
  constexpr int kSums = num_weight_sums<Basis>();
  constexpr int kSpan = (kStrip - 1) * kStride + 3;
  MMRKAN_DYNAMIC_SMEM(unsigned char, smem);  // one type for every instantiation
  MMRKAN_SHARED_ARRAY(opmath_t, scratch, [kWarpsPerBlock * kSums]);
  Chunk* weights = reinterpret_cast<Chunk*>(smem);
  Chunk* window = weights + kNumTaps * F::kChunks;
  opmath_t* dy_tile = reinterpret_cast<opmath_t*>(
      window + geo.tile_planes * geo.win_h * geo.win_pitch * F::kChunks);
  load_weights(base_weight, poly_weight, basis, weights);
  const StripOwner owner(geo);
  const int dy_cols = geo.tile_w + 2;
  const int64_t plane_size = static_cast<int64_t>(geo.height) * geo.width;

  // sums[p * kStored + s]: dL/dW[p][s]; sums[kSums - 1]: the constant's (sum of grad_out).
  opmath_t sums[kSums];
#pragma unroll
  for (int k = 0; k < kSums; ++k) sums[k] = opmath_t(0);

  for (TileCursor cursor(geo); cursor.valid(); cursor.advance(geo)) {
    const int64_t plane0 = cursor.plane0(geo);
    const int out_row0 = cursor.out_row0(geo);
    const int out_col0 = cursor.out_col0(geo);
    // grad_out of the tile and a ring of one output around it, 0 outside the tensor.
#pragma unroll 1
    for (int index = threadIdx.x; index < geo.dy_box.count; index += kThreadsPerBlock) {
      int q, r, c;
      geo.dy_box.unflatten(index, q, r, c);
      const int out_row = out_row0 - 1 + r;
      const int out_col = out_col0 - 1 + c;
      opmath_t dy = opmath_t(0);
      if (plane0 + q < geo.planes &&
          static_cast<unsigned>(out_row) < static_cast<unsigned>(geo.out_height) &&
          static_cast<unsigned>(out_col) < static_cast<unsigned>(geo.out_width)) {
        dy = static_cast<opmath_t>(
            grad_out[((plane0 + q) * geo.out_height + out_row) * geo.out_width + out_col]);
      }
      dy_tile[index] = dy;
    }
    evaluate_window<scalar_t, opmath_t, Basis, kStride, kStrip>(x, geo, basis, cursor, window);
    __syncthreads();

    const int64_t plane = plane0 + owner.plane;
    const int out_row = out_row0 + owner.row;
    if (owner.active && plane < geo.planes && out_row < geo.out_height) {
      // dy of the strip's outputs and of the ring: dy_row[d + 1][1 + o + dc] for output rows
      // out_row + d, d in {-1, 0, 1}.
      const opmath_t* dy_here =
          dy_tile + ((owner.plane * (geo.tile_h + 2) + owner.row + 1) * dy_cols) +
          owner.strip * kStrip + 1;

      // Weight gradients: the strip's outputs times the features of their taps (outputs past
      // the tensor have dy = 0).
      opmath_t dy_out[kStrip];
#pragma unroll
      for (int o = 0; o < kStrip; ++o) {
        dy_out[o] = dy_here[o];
        if constexpr (Basis::kConstant) sums[kSums - 1] += dy_out[o];
      }
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        const Chunk* row =
            window + ((owner.plane * geo.win_h + owner.row * kStride + i) * geo.win_pitch) *
                         F::kChunks;
#pragma unroll
        for (int j = 0; j < kSpan; ++j) {
          opmath_t f[kStored];
          F::load(row + strip_slot<kStride, kStrip>(geo, owner.strip, j) * F::kChunks, f);
#pragma unroll
          for (int o = 0; o < kStrip; ++o) {
            const int tap_col = j - o * kStride;
            if (tap_col >= 0 && tap_col < 3) {
#pragma unroll
              for (int s = 0; s < kStored; ++s) {
                sums[(i * 3 + tap_col) * kStored + s] += dy_out[o] * f[s];
              }
            }
          }
        }
      }

      // dx of the positions of the strip's cells: the taps reaching each are known at compile
      // time from its place (er, ec) in the cell.
#pragma unroll
      for (int o = 0; o < kStrip; ++o) {
        const int cell_col = owner.strip * kStrip + o;  // output column in the tile
#pragma unroll
        for (int er = 0; er < kStride; ++er) {
          const int in_row = (out_row0 + owner.row) * kStride + er;
          const int window_row = owner.plane * geo.win_h + owner.row * kStride + 1 + er;
#pragma unroll
          for (int ec = 0; ec < kStride; ++ec) {
            const int in_col = (out_col0 + cell_col) * kStride + ec;
            if (in_row >= geo.height || in_col >= geo.width) continue;
            opmath_t g[kStored];
#pragma unroll
            for (int s = 0; s < kStored; ++s) g[s] = opmath_t(0);
#pragma unroll
            for (int dr = -1; dr <= 1; ++dr) {
              const int tap_row = reaching_tap<kStride>(er, dr);
              if (tap_row < 0) continue;
#pragma unroll
              for (int dc = -1; dc <= 1; ++dc) {
                const int tap_col = reaching_tap<kStride>(ec, dc);
                if (tap_col < 0) continue;
                const opmath_t dy = dy_here[dr * dy_cols + o + dc];
                opmath_t w[kStored];
                F::load(weights + (tap_row * 3 + tap_col) * F::kChunks, w);
#pragma unroll
                for (int s = 0; s < kStored; ++s) g[s] += w[s] * dy;
              }
            }
            opmath_t f[kStored];
            const int window_col = cell_col * kStride + 1 + ec;
            F::load(window + (window_row * geo.win_pitch + window_slot<kStride, kStrip>(geo, window_col)) *
                                 F::kChunks,
                    f);
            grad_x[plane * plane_size + static_cast<int64_t>(in_row) * geo.width + in_col] =
                static_cast<scalar_t>(basis.chain(f, g));
          }
        }
      }
    }
    __syncthreads();  // the window and dy tile are rewritten for the next tile
  }

  const opmath_t block_total = block_sum(sums, scratch);
  if (threadIdx.x < kSums) {
    partials[threadIdx.x * static_cast<int64_t>(gridDim.x) + blockIdx.x] = block_total;
  }
  if (!arrive_last(counter, gridDim.x)) return;

  // The last block: one warp per sum, over the blocks in index order.
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int functions = basis.functions();
  for (int k = warp; k < kSums; k += kWarpsPerBlock) {
    const opmath_t sum = warp_ordered_sum(partials + k * static_cast<int64_t>(gridDim.x),
                                          static_cast<int64_t>(gridDim.x));
    if (lane != 0) continue;
    if (Basis::kConstant && k == kSums - 1) {
      for (int p = 0; p < kNumTaps; ++p) grad_poly_weight[p * functions] = sum;
      continue;
    }
    const int p = k / kStored;
    const int s = k % kStored;
    if (s == 0) {
      grad_base_weight[p] = sum;
    } else if (s < basis.stored()) {
      grad_poly_weight[p * functions + Basis::poly_column(s)] = sum;
    }
  }
}

}  // namespace cuda
}  // namespace mmrkan
