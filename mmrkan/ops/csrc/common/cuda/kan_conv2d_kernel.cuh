// CUDA kernels of the KAN convolution (docs/ops.md).
//
// One 3x3 kernel W[p][f] is shared by all (n, c) planes: feature f = 0 is act(x) (weight
// base_weight[p]), the others are the basis functions B_k(t), t = normalize(x) (weights
// poly_weight[p][k]). x is zero-padded FIRST, so a padded tap still contributes
// sum_k W[p][1 + k] B_k(t(0)).
//
// Built around the outputs (tiles and plans: kan_launch_plan.h):
//  * Per tile, the basis family evaluates the features of every input position of the tile's
//    window (halo and padding included) ONCE, into shared memory (16-byte chunks per position).
//  * Thread t owns a strip of `kStrip` outputs of one row; the 3 x ((kStrip - 1) s + 3) window
//    positions it reads are unrolled, every tap a compile-time offset. The weights are in shared
//    memory (read as broadcasts).
//  * Backward: each thread works on the input positions of its outputs' "cells" (the s x s
//    positions [s a, s a + s) x [s c, s c + s) of output (a, c); they partition the input):
//    their features are evaluated from x, and the taps that reach each position (1, 2, 2 or 4 of
//    them at stride 2, for the four parities) give dx, a gather over only those taps, and the
//    weight-gradient terms dy * feature, summed in registers. The padding's share of the weight
//    gradients is f(0) times sums of grad_out. At the end, the block's sums go to one partial
//    per block, and the block that finishes last adds the partials in a fixed order
//    (arrive_last): deterministic, one launch.
//  * Stride, basis family and number of functions are template parameters of the
//    specialisations the defaults run; RuntimeBasis covers every other family, count,
//    pixelwise normalisation (none, tanh) and base activation in one instantiation per dtype and
//    stride (kan_conv2d_launcher.h, docs/ops.md).
//  * The per-window normalisations (arctan, min-max, standardization) have per-output kernels
//    of their own (end of this file).
#pragma once

#include <cstdint>

#include "kan_common_kernel.cuh"
#include "kan_launch_plan.h"

namespace mmrkan {
namespace cuda {

// Basis functions the kernels support (poly_weight.size(1)).
constexpr int kMaxFunctions = 8;

// The codes of the op's arguments (KanBasis, KanNormalization and KanBaseActivation in
// kan_ops.h; the launcher checks that they match).
constexpr int kChebyshev = 0, kRbf = 1, kLegendre = 2, kJacobi = 3, kHermite = 4, kBSpline = 5;
constexpr int kNormalizeNone = 0, kNormalizeTanh = 1, kNormalizeArctan = 2, kNormalizeMinMax = 3,
              kNormalizeStandardization = 4;
constexpr int kActivationIdentity = 0, kActivationSilu = 1;
constexpr int kMaxSplineOrder = 5;

// ---- Elementwise functions of the run-time paths ----------------------------------------------

// Logistic sigmoid 1 / (1 + e^-v) (MUFU.EX2 and an IEEE division in fp32).
__device__ __forceinline__ float sigmoid_of(float v) {
  return 1.f / (1.f + approx_exp2(-v * 1.4426950408889634f));
}
__device__ __forceinline__ double sigmoid_of(double v) { return 1.0 / (1.0 + exp(-v)); }
__device__ __forceinline__ float floor_of(float v) { return floorf(v); }
__device__ __forceinline__ double floor_of(double v) { return floor(v); }
__device__ __forceinline__ float atan_of(float v) { return atanf(v); }
__device__ __forceinline__ double atan_of(double v) { return atan(v); }
__device__ __forceinline__ float sqrt_of(float v) { return sqrtf(v); }
__device__ __forceinline__ float clamp_of(float v, float low, float high) {
  return fminf(fmaxf(v, low), high);
}
__device__ __forceinline__ double clamp_of(double v, double low, double high) {
  return fmin(fmax(v, low), high);
}
__device__ __forceinline__ double sqrt_of(double v) { return sqrt(v); }

// act(v) of the base term and its derivative: identity or silu(v) = v sigmoid(v), silu'(v) =
// sigmoid(v) (1 + v (1 - sigmoid(v))).
template <typename T>
__device__ __forceinline__ T activation_of(bool silu, T v) {
  return silu ? v * sigmoid_of(v) : v;
}
template <typename T>
__device__ __forceinline__ T activation_slope(bool silu, T v) {
  if (!silu) return T(1);
  const T sigmoid = sigmoid_of(v);
  return sigmoid * (T(1) + v * (T(1) - sigmoid));
}

// ---- The families, on normalised values t ------------------------------------------------------
//
// B_0(t) .. B_{K-1}(t) of any family (docs/ops.md, "KAN convolution"), its run-time parameters
// computed on the host (make_basis_family, kan_conv2d_launcher.h). Arrays of kMaxFunctions
// values, zeros from K on.
template <typename T>
struct BasisFamily {
  int family;
  int num_functions;  // K
  // Polynomials: B_0 = 1, B_n = (a[n] t + b[n]) B_{n-1} - c[n] B_{n-2} (c[1] = 0).
  T a[kMaxFunctions], b[kMaxFunctions], c[kMaxFunctions];
  // rbf: centre_k = low + k step, B_k = exp(-((t - centre_k) inv_width)^2).
  T low, step, inv_width;
  // b_spline of order spline_order: knots first_knot + i h; s = (t - first_knot) / h is clamped
  // to cell_middle +- cell_radius (cells -1 .. G + 2k + 1: no basis function beyond).
  int spline_order;
  T first_knot, inv_h, cell_middle, cell_radius;

  __device__ __host__ bool polynomial() const { return family != kRbf && family != kBSpline; }

  // The k + 1 non-zero B-spline pieces at t: e[r] = B_{cell - r}(t) = N_k(r + u) (cardinal
  // B-splines, u the position in the cell) and, with `slopes`, their derivatives
  // (N_{k-1}(r + u) - N_{k-1}(r - 1 + u)) / h. Zeros beyond r = k.
  __device__ __forceinline__ int spline_pieces(T t, T (&e)[kMaxSplineOrder + 1],
                                               T (&slopes)[kMaxSplineOrder + 1]) const {
    const T s = clamp_of((t - first_knot) * inv_h, cell_middle - cell_radius,
                         cell_middle + cell_radius);
    const T cell = floor_of(s);
    const T u = s - cell;
    T lower[kMaxSplineOrder + 2];  // order k - 1, shifted: lower[r + 1] = N_{k-1}(r + u)
#pragma unroll
    for (int r = 0; r <= kMaxSplineOrder; ++r) e[r] = r == 0 ? T(1) : T(0);
#pragma unroll
    for (int r = 0; r <= kMaxSplineOrder + 1; ++r) lower[r] = T(0);
#pragma unroll
    for (int m = 1; m <= kMaxSplineOrder; ++m) {
      if (m > spline_order) break;
      if (m == spline_order) {
#pragma unroll
        for (int r = 0; r <= kMaxSplineOrder; ++r) lower[r + 1] = e[r];
      }
      // N_m(v) = (v N_{m-1}(v) + (m + 1 - v) N_{m-1}(v - 1)) / m at v = r + u.
      const T inv_m = T(1) / T(m);
#pragma unroll
      for (int r = kMaxSplineOrder; r >= 1; --r) {
        e[r] = ((T(r) + u) * e[r] + (T(m + 1 - r) - u) * e[r - 1]) * inv_m;
      }
      e[0] = u * e[0] * inv_m;
    }
#pragma unroll
    for (int r = 0; r <= kMaxSplineOrder; ++r) slopes[r] = (lower[r + 1] - lower[r]) * inv_h;
    return static_cast<int>(cell);
  }

  // B_j = the piece r = cell - j, plus t - t (NaN for NaN or infinite t, as efficient-KAN's
  // recursion gives).
  __device__ __forceinline__ void select_pieces(T t, int cell,
                                                const T (&pieces)[kMaxSplineOrder + 1],
                                                T (&out)[kMaxFunctions]) const {
#pragma unroll
    for (int j = 0; j < kMaxFunctions; ++j) {
      T value = t - t;
#pragma unroll
      for (int r = 0; r <= kMaxSplineOrder; ++r) value += cell == j + r ? pieces[r] : T(0);
      out[j] = j < num_functions ? value : T(0);
    }
  }

  __device__ __forceinline__ void values(T t, T (&out)[kMaxFunctions]) const {
    if (polynomial()) {
      T previous = T(0), current = T(1);
      out[0] = T(1);
#pragma unroll
      for (int n = 1; n < kMaxFunctions; ++n) {
        const T next = (a[n] * t + b[n]) * current - c[n] * previous;
        previous = current;
        current = next;
        out[n] = n < num_functions ? current : T(0);
      }
    } else if (family == kRbf) {
#pragma unroll
      for (int k = 0; k < kMaxFunctions; ++k) {
        const T u = (t - (low + T(k) * step)) * inv_width;
        out[k] = k < num_functions ? fast_exp(-u * u) : T(0);
      }
    } else {
      T pieces[kMaxSplineOrder + 1], slopes[kMaxSplineOrder + 1];
      const int cell = spline_pieces(t, pieces, slopes);
      select_pieces(t, cell, pieces, out);
    }
  }

  // sum_k g[k] B'_k(t), from t and the values B (from values(t)).
  __device__ __forceinline__ T chain(T t, const T (&values)[kMaxFunctions],
                                     const T (&g)[kMaxFunctions]) const {
    T sum = T(0);
    if (polynomial()) {
      // B'_n = a[n] B_{n-1} + (a[n] t + b[n]) B'_{n-1} - c[n] B'_{n-2}.
      T previous = T(0), current = T(0);
#pragma unroll
      for (int n = 1; n < kMaxFunctions; ++n) {
        const T next = a[n] * values[n - 1] + (a[n] * t + b[n]) * current - c[n] * previous;
        previous = current;
        current = next;
        if (n < num_functions) sum += g[n] * current;
      }
    } else if (family == kRbf) {
#pragma unroll
      for (int k = 0; k < kMaxFunctions; ++k) {
        const T u = (t - (low + T(k) * step)) * inv_width;
        if (k < num_functions) sum += g[k] * (T(-2) * u * inv_width) * values[k];
      }
    } else {
      T pieces[kMaxSplineOrder + 1], slopes[kMaxSplineOrder + 1];
      const int cell = spline_pieces(t, pieces, slopes);
      T derivatives[kMaxFunctions];
      select_pieces(t, cell, slopes, derivatives);
#pragma unroll
      for (int k = 0; k < kMaxFunctions; ++k) sum += g[k] * derivatives[k];
    }
    return sum;
  }
};

// ---- Basis functors of the window kernels ------------------------------------------------------
//
// A functor is a kernel argument and gives the features of one input value v (pixelwise
// normalisations: t = normalize(v) depends on v alone):
//   kStored             features kept per input position; feature 0 is act(v)
//   kConstant           true if a function equal to 1 everywhere (padding included) is folded
//                       out of the stored features (Chebyshev T_0): its weights add up to a
//                       constant, and its weight gradient is the sum of grad_out
//   kMinBlocksPerSm     __launch_bounds__ occupancy target (registers <= 64 for 4)
//   functions()         K, the columns of poly_weight
//   stored()            features in use (<= kStored)
//   poly_column(s)      the poly_weight column of stored feature s >= 1
//   eval(v, f)          f[0..kStored) at input value v
//   chain(v, f, g)      sum_s g[s] d f[s] / dv, from v and the stored features

// T_k(tanh v), k < K, identity base: stores v, T_1..T_{K-1} (t = T_1 = f[1]).
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

  // dT_k/dv = k U_{k-1}(t) (1 - t^2), U the Chebyshev polynomials of the second kind.
  template <typename T>
  __device__ __forceinline__ T chain(T, const T (&f)[kStored], const T (&g)[kStored]) const {
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

// Any family, K <= kMaxFunctions, normalisation none or tanh, either base activation, chosen at
// run time: stores act(v), B_0(t)..B_{K-1}(t) (zeros beyond). One instantiation per dtype and
// stride for everything the specialisations do not cover.
template <typename T>
struct RuntimeBasis {
  static constexpr int kStored = kMaxFunctions + 1;
  static constexpr bool kConstant = false;
  static constexpr int kMinBlocksPerSm = 1;

  BasisFamily<T> family;
  bool tanh;  // t = tanh(v), else t = v
  bool silu;  // act = silu, else the identity

  __device__ __host__ int functions() const { return family.num_functions; }
  __device__ __host__ int stored() const { return family.num_functions + 1; }
  __device__ __host__ static int poly_column(int s) { return s - 1; }

  __device__ __forceinline__ T normalize(T v) const { return tanh ? fast_tanh(v) : v; }

  __device__ __forceinline__ void eval(T v, T (&f)[kStored]) const {
    f[0] = activation_of(silu, v);
    T values[kMaxFunctions];
    family.values(normalize(v), values);
#pragma unroll
    for (int k = 0; k < kMaxFunctions; ++k) f[1 + k] = values[k];
  }

  __device__ __forceinline__ T chain(T v, const T (&f)[kStored], const T (&g)[kStored]) const {
    const T t = normalize(v);
    T values[kMaxFunctions], g_values[kMaxFunctions];
#pragma unroll
    for (int k = 0; k < kMaxFunctions; ++k) {
      values[k] = f[1 + k];
      g_values[k] = g[1 + k];
    }
    const T sum = family.chain(t, values, g_values);
    return g[0] * activation_slope(silu, v) + (tanh ? sum * (T(1) - t * t) : sum);
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

  // Loads exactly the kStored values (a last chunk of 3 fp32 as 8 + 4 bytes): the registers of
  // an unused value would be held all the same.
  __device__ __forceinline__ static void load(const Chunk* src, T (&f)[kStored]) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      constexpr int kLast = kStored - (kChunks - 1) * kPerChunk;  // values in the last chunk
      if (c + 1 < kChunks || kLast == kPerChunk) {
        const Chunk chunk = src[c];
#pragma unroll
        for (int i = 0; i < kPerChunk; ++i) f[c * kPerChunk + i] = chunk.val[i];
      } else {
        const T* values = reinterpret_cast<const T*>(src + c);
        int i = 0;
        if constexpr (kLast >= 2 && sizeof(T) == 4) {
          const Pack<T, 2> pair = *reinterpret_cast<const Pack<T, 2>*>(values);
          f[c * kPerChunk] = pair.val[0];
          f[c * kPerChunk + 1] = pair.val[1];
          i = 2;
        }
#pragma unroll
        for (; i < kLast; ++i) f[c * kPerChunk + i] = values[i];
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

// f[0..kHalf) = src[0..kHalf) (src 8-byte aligned): one 8- or 16-byte shared load per 2 or 4
// values.
template <typename T, int kHalf>
__device__ __forceinline__ void load_half(const T* src, T (&f)[kHalf]) {
  if constexpr (kHalf * sizeof(T) % 8 == 0 && sizeof(T) == 4) {
#pragma unroll
    for (int k = 0; k < kHalf; k += 2) {
      const Pack<T, 2> pair = *reinterpret_cast<const Pack<T, 2>*>(src + k);
      f[k] = pair.val[0];
      f[k + 1] = pair.val[1];
    }
  } else {
#pragma unroll
    for (int k = 0; k < kHalf; ++k) f[k] = src[k];
  }
}

// Window slot of column j of a strip (relative to the strip's first slot): a compile-time
// offset plus, with the parity split, j's half.
template <int kStride, int kStrip>
__device__ __forceinline__ int strip_slot(const ConvGeometry& geo, int j) {
  if constexpr (kStride * kStrip == 2) {
    return (j & 1) * geo.half_pitch + (j >> 1);
  } else {
    return j;
  }
}

// The thread's strip: plane q, row a, strip sb of the tile, and where its taps and grad_out are
// in shared memory (the same in every tile).
template <int kStride, int kStrip>
struct StripOwner {
  int plane, row, strip;
  int window_slot;  // slot of the strip's first tap (tap row 0) in the window
  int dy_index;     // index of the strip's first output in the grad_out tile
  bool active;

  // Strip `index` of the tile (the thread's index, or another in the weight-gradient pass).
  __device__ StripOwner(const ConvGeometry& geo, int index) {
    strip = index % geo.strips_w;
    row = index / geo.strips_w % geo.tile_h;
    plane = index / (geo.strips_w * geo.tile_h);
    active = plane < geo.tile_planes;
    const int first_col = strip * kStrip * kStride;
    window_slot = (plane * geo.win_h + row * kStride) * geo.win_pitch +
                  (kStride * kStrip == 2 ? first_col / 2 : first_col);
    dy_index = (plane * (geo.tile_h + 2) + row + 1) * (geo.tile_w + 2) + strip * kStrip + 1;
  }
};

// Walks this block's consecutive tiles (plane group, tile row, tile column) without divisions.
// Tile counts fit in 31 bits (kan_conv2d_launcher.h checks).
struct TileCursor {
  int left, group, tile_row, tile_col;  // left: tiles still to do
  int planes;  // planes of the tile inside the tensor
  // Elements of x (and of y / grad_out) before the tile's first plane.
  int64_t in_offset, out_offset;

  __device__ explicit TileCursor(const ConvGeometry& geo) {
    const int first = static_cast<int>(blockIdx.x * geo.tiles_per_block);
    left = static_cast<int>(min(geo.num_tiles - first, geo.tiles_per_block));
    const int per_group = geo.tiles_w * geo.tiles_h;
    group = first / per_group;
    const int in_group = first - group * per_group;
    tile_row = in_group / geo.tiles_w;
    tile_col = in_group % geo.tiles_w;
    in_offset = plane0(geo) * geo.height * geo.width;
    out_offset = plane0(geo) * geo.out_height * geo.out_width;
    planes = planes_of_group(geo);
  }

  __device__ bool valid() const { return left > 0; }

  __device__ void advance(const ConvGeometry& geo) {
    --left;
    if (++tile_col == geo.tiles_w) {
      tile_col = 0;
      if (++tile_row == geo.tiles_h) {
        tile_row = 0;
        ++group;
        in_offset += geo.tile_planes * geo.height * geo.width;
        out_offset += geo.tile_planes * geo.out_height * geo.out_width;
        planes = planes_of_group(geo);
      }
    }
  }

  __device__ int64_t plane0(const ConvGeometry& geo) const {
    return static_cast<int64_t>(group) * geo.tile_planes;
  }
  __device__ int planes_of_group(const ConvGeometry& geo) const {
    return static_cast<int>(min(geo.planes - plane0(geo), int64_t{geo.tile_planes}));
  }
  __device__ int out_row0(const ConvGeometry& geo) const { return tile_row * geo.tile_h; }
  __device__ int out_col0(const ConvGeometry& geo) const { return tile_col * geo.tile_w; }
};

// Evaluates the features of the tile's window into shared memory (every thread; the caller
// synchronises before reading). Thread t fills slot t % win_pitch of rows t / win_pitch,
// + kThreadsPerBlock / win_pitch, ...: one window column for all of them. Positions outside x
// (padding, past the last plane) hold the features of 0. Offsets inside a tile's planes fit in
// 31 bits (kan_conv2d_launcher.h checks).
template <typename scalar_t, typename opmath_t, typename Basis, int kStride, int kStrip>
__device__ __forceinline__ void evaluate_window(const scalar_t* __restrict__ x,
                                                const ConvGeometry& geo, const Basis& basis,
                                                const TileCursor& cursor,
                                                typename FeatureLayout<opmath_t>::Chunk* window) {
  using F = Features<opmath_t, Basis::kStored>;
  const int slot = threadIdx.x & (geo.win_pitch - 1);
  int column = slot;
  if constexpr (kStride * kStrip == 2) {
    column = slot < geo.half_pitch ? 2 * slot : 2 * (slot - geo.half_pitch) + 1;
  }
  const int c = cursor.out_col0(geo) * kStride - 1 + column;
  const bool column_inside =
      column < geo.win_w && static_cast<unsigned>(c) < static_cast<unsigned>(geo.width);
  const int row_origin = cursor.out_row0(geo) * kStride - 1;
  const int row_step = kThreadsPerBlock >> geo.pitch_shift;
  // The thread's first row (plane q, row wr of its window).
  int row = threadIdx.x >> geo.pitch_shift;
  const int q = static_cast<int>(geo.win_rows.div(static_cast<unsigned>(row)));
  int wr = row - q * geo.win_h;
  const bool row_inside = static_cast<unsigned>(row_origin + wr) < static_cast<unsigned>(geo.height);
  const scalar_t* src = x + cursor.in_offset + c +
                        static_cast<int64_t>(q) * geo.height * geo.width +
                        static_cast<int64_t>(row_origin + wr) * geo.width;
  typename F::Chunk* dst = window + ((row << geo.pitch_shift) + slot) * F::kChunks;
  if (geo.planes_per_step > 0) {
    // Windows of whole small planes: a thread keeps its row and column and steps over the
    // tile's planes, planes_per_step at a time.
    if (row >= geo.planes_per_step * geo.win_h) return;
    const bool inside = column_inside && row_inside;
#pragma unroll 1
    for (int plane = q; plane < geo.tile_planes; plane += geo.planes_per_step) {
      opmath_t f[Basis::kStored];
      basis.eval(inside && plane < cursor.planes ? static_cast<opmath_t>(*src) : opmath_t(0), f);
      F::store(dst, f);
      src += geo.step_offset;
      dst += geo.planes_per_step * geo.win_h * geo.win_pitch * F::kChunks;
    }
    return;
  }
  // Else row_step rows at a time (wr and the x element move along, into the next plane).
  const int rows = geo.window_rows();
  const int rows_inside = cursor.planes * geo.win_h;  // rows of planes inside the tensor
#pragma unroll 1
  for (; row < rows; row += row_step) {
    opmath_t v = opmath_t(0);
    if (column_inside && row < rows_inside &&
        static_cast<unsigned>(row_origin + wr) < static_cast<unsigned>(geo.height)) {
      v = static_cast<opmath_t>(*src);
    }
    opmath_t f[Basis::kStored];
    basis.eval(v, f);
    F::store(dst, f);
    dst += kThreadsPerBlock * F::kChunks;
    wr += geo.step_rows;
    src += geo.step_offset;
    if (wr >= geo.win_h) {
      wr -= geo.win_h;
      src += geo.wrap_offset;
    }
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
  const StripOwner<kStride, kStrip> owner(geo, threadIdx.x);

  for (TileCursor cursor(geo); cursor.valid(); cursor.advance(geo)) {
    evaluate_window<scalar_t, opmath_t, Basis, kStride, kStrip>(x, geo, basis, cursor, window);
    __syncthreads();
    const int out_row = cursor.out_row0(geo) + owner.row;
    const int out_col = cursor.out_col0(geo) + owner.strip * kStrip;
    if (owner.active && owner.plane < cursor.planes && out_row < geo.out_height &&
        out_col < geo.out_width) {
      opmath_t acc[kStrip];
#pragma unroll
      for (int o = 0; o < kStrip; ++o) acc[o] = constant;
      // One tap row at a time: its loads in flight together, without holding all 9 taps'
      // features and weights in registers.
#pragma unroll 1
      for (int i = 0; i < 3; ++i) {
        const Chunk* row = window + (owner.window_slot + i * geo.win_pitch) * F::kChunks;
#pragma unroll
        for (int j = 0; j < kSpan; ++j) {
          opmath_t f[Basis::kStored];
          F::load(row + strip_slot<kStride, kStrip>(geo, j) * F::kChunks, f);
#pragma unroll
          for (int o = 0; o < kStrip; ++o) {
            const int tap_col = j - o * kStride;
            if (tap_col >= 0 && tap_col < 3) {
              acc[o] += dot_weights<opmath_t>(weights + (i * 3 + tap_col) * F::kChunks, f);
            }
          }
        }
      }
      scalar_t* out = y + cursor.out_offset +
                      (owner.plane * geo.out_height + out_row) * geo.out_width + out_col;
#pragma unroll
      for (int o = 0; o < kStrip; ++o) {
        if (out_col + o < geo.out_width) out[o] = static_cast<scalar_t>(acc[o]);
      }
    }
    __syncthreads();  // the window is rewritten for the next tile
  }
}

// The backward's weight-gradient sums of a family, the partials' rows: one per (tap, stored
// feature) over the real input positions, one per tap of grad_out over the padding (the
// padding's features are those of 0 at every padded position: f_s(0) times that sum gives its
// share of dW[p][s]), and the constant's.
template <typename Basis>
struct WeightSums {
  static constexpr int kReal = kNumTaps * Basis::kStored;  // real[p * kStored + s]
  static constexpr int kPadding = kReal;                   // padding[p] at kPadding + p
  static constexpr int kConstant = kReal + kNumTaps;       // if Basis::kConstant
  static constexpr int kCount = kConstant + (Basis::kConstant ? 1 : 0);
};

// Tap index along one axis by which output a + d reads input position s a + e (e < s: the
// position's place in output a's cell), or -1 if it does not.
template <int kStride>
__device__ __forceinline__ constexpr int reaching_tap(int e, int d) {
  return 1 + e - kStride * d >= 0 && 1 + e - kStride * d <= 2 ? 1 + e - kStride * d : -1;
}

// One pass of the backward over the block's tiles (see kan_conv2d_backward_kernel). Sums, in
// the thread's registers, dy * feature s for s in [kBegin, kEnd) over the (position, tap) pairs
// of its cells into real[p * (kEnd - kBegin) + s - kBegin]; with kDx also dx, the padding sums
// and the constant's. grad_out of a tile and of a ring of one output around it are in dy_tile.
template <bool kDx, int kBegin, int kEnd, typename scalar_t, typename opmath_t, typename Basis,
          int kStride, int kStrip>
__device__ __forceinline__ void backward_pass(
    const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ x,
    scalar_t* __restrict__ grad_x, const ConvGeometry& geo, const Basis& basis,
    const typename FeatureLayout<opmath_t>::Chunk* weights, opmath_t* dy_tile,
    const StripOwner<kStride, kStrip>& owner, opmath_t (&real)[kNumTaps * (kEnd - kBegin)],
    opmath_t (&padding)[kNumTaps], opmath_t& constant) {
  using F = Features<opmath_t, Basis::kStored>;
  constexpr int kStored = Basis::kStored;
  constexpr int kCount = kEnd - kBegin;
  const int dy_cols = geo.tile_w + 2;
  const int plane_size = geo.height * geo.width;
  const int out_plane_size = geo.out_height * geo.out_width;
  for (TileCursor cursor(geo); cursor.valid(); cursor.advance(geo)) {
    const int out_row0 = cursor.out_row0(geo);
    const int out_col0 = cursor.out_col0(geo);
    const scalar_t* dy_planes = grad_out + cursor.out_offset;
#pragma unroll 1
    for (int index = threadIdx.x; index < geo.dy_box.count; index += kThreadsPerBlock) {
      int q, r, c;
      geo.dy_box.unflatten(index, q, r, c);
      const int out_row = out_row0 - 1 + r;
      const int out_col = out_col0 - 1 + c;
      opmath_t dy = opmath_t(0);
      if (q < cursor.planes &&
          static_cast<unsigned>(out_row) < static_cast<unsigned>(geo.out_height) &&
          static_cast<unsigned>(out_col) < static_cast<unsigned>(geo.out_width)) {
        dy = static_cast<opmath_t>(
            dy_planes[q * out_plane_size + out_row * geo.out_width + out_col]);
      }
      dy_tile[index] = dy;
    }
    __syncthreads();

    const int out_row = out_row0 + owner.row;
    const int out_col = out_col0 + owner.strip * kStrip;
    if (owner.active && owner.plane < cursor.planes && out_row < geo.out_height &&
        out_col < geo.out_width) {
      const opmath_t* dy_here = dy_tile + owner.dy_index;  // dy_here[d * dy_cols + o]
      if constexpr (kDx) {
        // Taps reading the padding: rows s a - 1 + i outside [0, H), columns s c - 1 + j
        // outside [0, W). dy is 0 past the tensor's edge.
        const int row = out_row * kStride - 1;
        bool row_padded[3];
#pragma unroll
        for (int i = 0; i < 3; ++i) {
          row_padded[i] = static_cast<unsigned>(row + i) >= static_cast<unsigned>(geo.height);
        }
#pragma unroll
        for (int o = 0; o < kStrip; ++o) {
          const opmath_t dy = dy_here[o];
          if constexpr (Basis::kConstant) constant += dy;
          const int col = (out_col + o) * kStride - 1;
#pragma unroll
          for (int j = 0; j < 3; ++j) {
            const bool col_padded =
                static_cast<unsigned>(col + j) >= static_cast<unsigned>(geo.width);
#pragma unroll
            for (int i = 0; i < 3; ++i) {
              if (row_padded[i] || col_padded) padding[i * 3 + j] += dy;
            }
          }
        }
      }
      // Position (er, ec) of cell o: input (in_row0 + er, in_col0 + o s + ec).
      const int in_row0 = out_row * kStride;
      const int in_col0 = out_col * kStride;
      const int64_t first = cursor.in_offset + owner.plane * plane_size + in_row0 * geo.width +
                            in_col0;
      // One cell at a time: its taps' weights in flight together, not the whole strip's.
#pragma unroll 1
      for (int o = 0; o < kStrip; ++o) {
#pragma unroll
        for (int er = 0; er < kStride; ++er) {
#pragma unroll
          for (int ec = 0; ec < kStride; ++ec) {
            // A position of the cell past the bottom or right edge (odd H or W at stride 2) is
            // padding, counted by the padding sums: its terms are masked, not branched around.
            const bool inside =
                in_row0 + er < geo.height && in_col0 + o * kStride + ec < geo.width;
            const int64_t offset = first + static_cast<int64_t>(er) * geo.width + o * kStride + ec;
            const opmath_t v = inside ? static_cast<opmath_t>(x[offset]) : opmath_t(0);
            opmath_t f[kStored];
            basis.eval(v, f);
            opmath_t masked[kStored];
#pragma unroll
            for (int s = kBegin; s < kEnd; ++s) masked[s] = inside ? f[s] : opmath_t(0);
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
                const int p = tap_row * 3 + tap_col;
                const opmath_t dy = dy_here[dr * dy_cols + o + dc];
#pragma unroll
                for (int s = kBegin; s < kEnd; ++s) {
                  real[p * kCount + s - kBegin] += dy * masked[s];
                }
                if constexpr (kDx) {
                  opmath_t w[kStored];
                  F::load(weights + p * F::kChunks, w);
#pragma unroll
                  for (int s = 0; s < kStored; ++s) g[s] += w[s] * dy;
                }
              }
            }
            if (kDx && inside) grad_x[offset] = static_cast<scalar_t>(basis.chain(v, f, g));
          }
        }
      }
    }
    __syncthreads();  // the grad_out tile is rewritten for the next tile
  }
}

// partials: (WeightSums<Basis>::kCount, gridDim.x); counter: cleared by the launcher.
// grad_poly_weight: (9, K).
//
// The gradients are gathered by the input positions of the threads' cells: each position's
// features are evaluated from x, and the taps that reach it (known at compile time from its
// place in the cell) give dx (a gather over only those taps) and the weight-gradient terms
// dy * feature. The padding's terms are f(0) times the sums of dy over the taps that read it.
// Two passes over the block's tiles, each keeping part of the sums in registers (all of them
// with dx's work would not fit in the 64 registers of half occupancy):
//  1. dx, the first third of the features ([0, kFirst): x alone for ChebyshevBasis<3> and <4>),
//     the padding sums and the constant's;
//  2. the other features.
// Each pass's block sums go to one partial per block, and the block that finishes last adds the
// partials in a fixed order (arrive_last): deterministic, one launch.
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
  using Sums = WeightSums<Basis>;
  constexpr int kStored = Basis::kStored;
  // Features of pass 1, which also holds dx's work: about a third of them.
  constexpr int kFirst = kStored >= 3 ? kStored / 3 : 1;
  constexpr int kFirstSums = kNumTaps * kFirst + kNumTaps + 1;  // + padding, constant
  MMRKAN_DYNAMIC_SMEM(unsigned char, smem);  // one type for every instantiation
  MMRKAN_SHARED_ARRAY(opmath_t, scratch, [kWarpsPerBlock * kFirstSums]);
  Chunk* weights = reinterpret_cast<Chunk*>(smem);
  opmath_t* dy_tile = reinterpret_cast<opmath_t*>(weights + kNumTaps * F::kChunks);
  load_weights(base_weight, poly_weight, basis, weights);
  const StripOwner<kStride, kStrip> owner(geo, threadIdx.x);
  const int64_t blocks = gridDim.x;

  {
    // Pass 1: sums[0, 9 kFirst) real, then 9 padding, then the constant.
    opmath_t sums[kFirstSums];
#pragma unroll
    for (int k = 0; k < kFirstSums; ++k) sums[k] = opmath_t(0);
    opmath_t(&real)[kNumTaps * kFirst] = *reinterpret_cast<opmath_t(*)[kNumTaps * kFirst]>(sums);
    opmath_t(&padding)[kNumTaps] =
        *reinterpret_cast<opmath_t(*)[kNumTaps]>(sums + kNumTaps * kFirst);
    backward_pass<true, 0, kFirst, scalar_t, opmath_t>(grad_out, x, grad_x, geo, basis, weights,
                                                       dy_tile, owner, real, padding,
                                                       sums[kFirstSums - 1]);
    const opmath_t total = block_sum(sums, scratch);
    if (threadIdx.x < kFirstSums) {
      const int k = threadIdx.x;
      int row = -1;
      if (k < kNumTaps * kFirst) {
        row = k / kFirst * kStored + k % kFirst;
      } else if (k < kNumTaps * kFirst + kNumTaps) {
        row = Sums::kPadding + k - kNumTaps * kFirst;
      } else if (Basis::kConstant) {
        row = Sums::kConstant;
      }
      if (row >= 0) partials[row * blocks + blockIdx.x] = total;
    }
    __syncthreads();  // scratch is used again
  }
  if constexpr (kStored > kFirst) {
    // Pass 2: the other features.
    constexpr int kSecond = kStored - kFirst;
    opmath_t real[kNumTaps * kSecond];
#pragma unroll
    for (int k = 0; k < kNumTaps * kSecond; ++k) real[k] = opmath_t(0);
    opmath_t unused_padding[kNumTaps], unused_constant;
    backward_pass<false, kFirst, kStored, scalar_t, opmath_t>(
        grad_out, x, grad_x, geo, basis, weights, dy_tile, owner, real, unused_padding,
        unused_constant);
    const opmath_t total = block_sum(real, scratch);
    if (threadIdx.x < kNumTaps * kSecond) {
      const int k = threadIdx.x;
      partials[(k / kSecond * kStored + kFirst + k % kSecond) * blocks + blockIdx.x] = total;
    }
  }
  if (!arrive_last(counter, gridDim.x)) return;

  // The last block: every sum over the blocks in index order, one warp per sum; then
  // dW[p][s] = real + f_s(0) padding[p].
  MMRKAN_SHARED_ARRAY(opmath_t, totals, [Sums::kCount]);
  MMRKAN_SHARED_ARRAY(opmath_t, at_zero, [kStored]);  // the features of the padding
  const int warp = threadIdx.x / kWarpSize;
  for (int k = warp; k < Sums::kCount; k += kWarpsPerBlock) {
    const opmath_t sum = warp_ordered_sum(partials + k * blocks, blocks);
    if (threadIdx.x % kWarpSize == 0) totals[k] = sum;
  }
  if (threadIdx.x == 0) {
    opmath_t f[kStored];
    basis.eval(opmath_t(0), f);
#pragma unroll
    for (int s = 0; s < kStored; ++s) at_zero[s] = f[s];
  }
  __syncthreads();
  const int functions = basis.functions();
  for (int k = threadIdx.x; k < Sums::kReal; k += kThreadsPerBlock) {
    const int p = k / kStored;
    const int s = k % kStored;
    const opmath_t sum = totals[k] + at_zero[s] * totals[Sums::kPadding + p];
    if (s == 0) {
      grad_base_weight[p] = sum;
    } else if (s < basis.stored()) {
      grad_poly_weight[p * functions + Basis::poly_column(s)] = sum;
    }
  }
  if (Basis::kConstant && threadIdx.x < kNumTaps) {
    grad_poly_weight[threadIdx.x * functions] = totals[Sums::kConstant];
  }
}

// ---- Per-window normalisations (arctan, min-max, standardization) ------------------------------
//
// t of a tap depends on the statistics of the 9 taps of the window that reads it, so no feature
// is shared between outputs: these kernels work per output (forward, weight gradients) and per
// input position (dx, gathered from the windows that read it, each recomputed), with the family,
// the normalisation and the base activation read at run time. One instantiation per dtype.

// The options of the per-window path (kernel argument).
template <typename T>
struct WindowBasis {
  BasisFamily<T> family;
  int normalization;  // kNormalizeArctan, kNormalizeMinMax or kNormalizeStandardization
  bool silu;
  int stride;
};

// The weights W[p][s] in shared memory: s = 0 the base weight, s = 1 + k poly_weight[p][k].
constexpr int kWindowWeightPitch = kMaxFunctions + 1;

template <typename T>
__device__ __forceinline__ void load_window_weights(const T* __restrict__ base_weight,
                                                    const T* __restrict__ poly_weight,
                                                    int num_functions, T* weights) {
  for (int i = threadIdx.x; i < kNumTaps * kWindowWeightPitch; i += kThreadsPerBlock) {
    const int p = i / kWindowWeightPitch;
    const int s = i % kWindowWeightPitch;
    T w = T(0);
    if (s == 0) {
      w = base_weight[p];
    } else if (s <= num_functions) {
      w = poly_weight[p * num_functions + s - 1];
    }
    weights[i] = w;
  }
}

// The 9 taps of the window at (row0, col0) (its top-left corner, padding included) of a plane.
template <typename scalar_t, typename T>
__device__ __forceinline__ void load_window_taps(const scalar_t* __restrict__ plane,
                                                 const WindowPlan& plan, int row0, int col0,
                                                 T (&v)[kNumTaps]) {
#pragma unroll
  for (int i = 0; i < 3; ++i) {
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      const int r = row0 + i, c = col0 + j;
      const bool inside = static_cast<unsigned>(r) < static_cast<unsigned>(plan.height) &&
                          static_cast<unsigned>(c) < static_cast<unsigned>(plan.width);
      v[i * 3 + j] = inside ? static_cast<T>(plane[r * plan.width + c]) : T(0);
    }
  }
}

// A window's statistics: arctan: centre = mean; min-max: centre = min, r = 1 / (max - min +
// eps), the first taps of the min and the max; standardization: centre = mean, r = 1 / (std +
// eps), r8 = 1 / (8 std) (0 where std = 0). As the CPU kernel (window_statistics).
template <typename T>
struct WindowStatistics {
  T centre, r, r8;
  int argmin, argmax;

  __device__ __forceinline__ WindowStatistics(int normalization, const T (&v)[kNumTaps]) {
    r = T(0);
    r8 = T(0);
    argmin = 0;
    argmax = 0;
    const T eps = static_cast<T>(1e-8);  // kNormalizationEps
    if (normalization == kNormalizeMinMax) {
      T low = v[0], high = v[0];
#pragma unroll
      for (int p = 1; p < kNumTaps; ++p) {
        if (v[p] < low) {
          low = v[p];
          argmin = p;
        }
        if (v[p] > high) {
          high = v[p];
          argmax = p;
        }
      }
      centre = low;
      r = T(1) / (high - low + eps);
      return;
    }
    T sum = T(0);
#pragma unroll
    for (int p = 0; p < kNumTaps; ++p) sum += v[p];
    centre = sum / T(kNumTaps);
    if (normalization == kNormalizeStandardization) {
      T squares = T(0);
#pragma unroll
      for (int p = 0; p < kNumTaps; ++p) squares += (v[p] - centre) * (v[p] - centre);
      const T std = sqrt_of(squares / T(kNumTaps - 1));
      r = T(1) / (std + eps);
      r8 = std > T(0) ? T(1) / (T(kNumTaps - 1) * std) : T(0);
    }
  }

  // t of a tap of value v; arctan also gives dt/du = (2 / pi) / (1 + u^2), u = (v - mean) scale.
  __device__ __forceinline__ T normalize(int normalization, T v, T scale, T& slope) const {
    const T two_over_pi = static_cast<T>(0.63661977236758134308);
    if (normalization == kNormalizeArctan) {
      const T u = (v - centre) * scale;
      slope = two_over_pi / (T(1) + u * u);
      return two_over_pi * atan_of(u);
    }
    slope = T(1);
    if (normalization == kNormalizeMinMax) return T(2) * (v - centre) * r - T(1);
    return (v - centre) * r;
  }
};

// sum_k W[p][1 + k] B_k(t) and the base term W[p][0] act(v) of tap p.
template <typename T>
__device__ __forceinline__ T window_tap_value(const WindowBasis<T>& basis, const T* weights,
                                              int p, T v, T t) {
  T values[kMaxFunctions];
  basis.family.values(t, values);
  T sum = weights[p * kWindowWeightPitch] * activation_of(basis.silu, v);
#pragma unroll
  for (int k = 0; k < kMaxFunctions; ++k) sum += weights[p * kWindowWeightPitch + 1 + k] * values[k];
  return sum;
}

// dL/dx_q of every tap q of one window, whose output has gradient dy; returns
// sum_p G_p (x_p - centre), the arctan scale's gradient for arctan (G_p = dL/dt_p dt_p/du_p).
template <typename T>
__device__ __forceinline__ T window_tap_grads(const WindowBasis<T>& basis, const T* weights,
                                              T scale, const T (&v)[kNumTaps], T dy,
                                              T (&grad)[kNumTaps]) {
  const WindowStatistics<T> stats(basis.normalization, v);
  T sum_g = T(0), moment = T(0);
#pragma unroll 1
  for (int p = 0; p < kNumTaps; ++p) {
    T slope;
    const T t = stats.normalize(basis.normalization, v[p], scale, slope);
    T values[kMaxFunctions], w[kMaxFunctions];
    basis.family.values(t, values);
#pragma unroll
    for (int k = 0; k < kMaxFunctions; ++k) w[k] = weights[p * kWindowWeightPitch + 1 + k];
    const T g = dy * basis.family.chain(t, values, w) * slope;
    grad[p] = g;
    sum_g += g;
    moment += g * (v[p] - stats.centre);
  }
#pragma unroll 1
  for (int q = 0; q < kNumTaps; ++q) {
    T g = grad[q];
    if (basis.normalization == kNormalizeArctan) {
      // dt_p/dx_q = slope_p scale (delta_pq - 1/9).
      g = scale * (g - sum_g * (T(1) / T(kNumTaps)));
    } else if (basis.normalization == kNormalizeMinMax) {
      // dt_p/dx_q = 2r (delta_pq - delta_q,argmin) - 2 (x_p - min) r^2 (delta_q,argmax -
      // delta_q,argmin).
      const T r = stats.r;
      g = T(2) * r * g + (q == stats.argmin ? T(2) * r * (r * moment - sum_g) : T(0)) +
          (q == stats.argmax ? T(-2) * r * r * moment : T(0));
    } else {
      // dt_p/dx_q = r (delta_pq - 1/9) - (x_p - mean) r^2 (x_q - mean) / (8 std).
      const T r = stats.r;
      g = r * (g - sum_g * (T(1) / T(kNumTaps))) -
          r * r * moment * (v[q] - stats.centre) * stats.r8;
    }
    grad[q] = g + dy * weights[q * kWindowWeightPitch] * activation_slope(basis.silu, v[q]);
  }
  return moment;
}

// y: (planes, out_height, out_width); one output per thread and step.
template <typename scalar_t, typename opmath_t>
__global__ void __launch_bounds__(kThreadsPerBlock)
    kan_conv2d_window_forward_kernel(const scalar_t* __restrict__ x,
                                     const opmath_t* __restrict__ base_weight,
                                     const opmath_t* __restrict__ poly_weight,
                                     const opmath_t* __restrict__ norm_scale,
                                     scalar_t* __restrict__ y, WindowPlan plan,
                                     WindowBasis<opmath_t> basis) {
  MMRKAN_SHARED_ARRAY(opmath_t, weights, [kNumTaps * kWindowWeightPitch]);
  load_window_weights(base_weight, poly_weight, basis.family.num_functions, weights);
  __syncthreads();
  const opmath_t scale = norm_scale[0];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * plan.chunk;
  const int64_t end = min(first + plan.chunk, plan.outputs);
  const int64_t out_plane = static_cast<int64_t>(plan.out_height) * plan.out_width;
#pragma unroll 1
  for (int64_t o = first + threadIdx.x; o < end; o += kThreadsPerBlock) {
    const int64_t plane = o / out_plane;
    const int within = static_cast<int>(o - plane * out_plane);
    const int a = within / plan.out_width, b = within % plan.out_width;
    opmath_t v[kNumTaps];
    load_window_taps(x + plane * plan.height * plan.width, plan, a * basis.stride - 1,
                     b * basis.stride - 1, v);
    const WindowStatistics<opmath_t> stats(basis.normalization, v);
    opmath_t sum = opmath_t(0);
#pragma unroll 1
    for (int p = 0; p < kNumTaps; ++p) {
      opmath_t slope;
      const opmath_t t = stats.normalize(basis.normalization, v[p], scale, slope);
      sum += window_tap_value(basis, weights, p, v[p], t);
    }
    y[o] = static_cast<scalar_t>(sum);
  }
}

// The per-window backward's sums: W[p][s] at p * kWindowWeightPitch + s, then the arctan scale.
constexpr int kWindowSums = kNumTaps * kWindowWeightPitch + 1;

// partials: (kWindowSums, gridDim.x); counter: cleared by the launcher. Each block does the
// outputs [first, first + chunk) (weight and scale sums) and the input positions [first, first +
// chunk) (dx, a gather over the windows that read each one).
template <typename scalar_t, typename opmath_t>
__global__ void __launch_bounds__(kThreadsPerBlock)
    kan_conv2d_window_backward_kernel(const scalar_t* __restrict__ grad_out,
                                      const scalar_t* __restrict__ x,
                                      const opmath_t* __restrict__ base_weight,
                                      const opmath_t* __restrict__ poly_weight,
                                      const opmath_t* __restrict__ norm_scale,
                                      scalar_t* __restrict__ grad_x,
                                      opmath_t* __restrict__ grad_base_weight,
                                      opmath_t* __restrict__ grad_poly_weight,
                                      opmath_t* __restrict__ grad_norm_scale,
                                      opmath_t* __restrict__ partials,
                                      unsigned* __restrict__ counter, WindowPlan plan,
                                      WindowBasis<opmath_t> basis) {
  MMRKAN_SHARED_ARRAY(opmath_t, weights, [kNumTaps * kWindowWeightPitch]);
  MMRKAN_SHARED_ARRAY(opmath_t, scratch, [kWarpsPerBlock * kWindowWeightPitch]);
  load_window_weights(base_weight, poly_weight, basis.family.num_functions, weights);
  __syncthreads();
  const opmath_t scale = norm_scale[0];
  const int64_t blocks = gridDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * plan.chunk;
  const int64_t out_plane = static_cast<int64_t>(plan.out_height) * plan.out_width;
  const int64_t in_plane = static_cast<int64_t>(plan.height) * plan.width;
  const int64_t out_end = min(first + plan.chunk, plan.outputs);

  // Weight sums, one tap at a time (its 1 + K sums in registers): dy act(x_p), dy B_k(t_p).
#pragma unroll 1
  for (int p = 0; p < kNumTaps; ++p) {
    opmath_t sums[kWindowWeightPitch];
#pragma unroll
    for (int s = 0; s < kWindowWeightPitch; ++s) sums[s] = opmath_t(0);
#pragma unroll 1
    for (int64_t o = first + threadIdx.x; o < out_end; o += kThreadsPerBlock) {
      const int64_t plane = o / out_plane;
      const int within = static_cast<int>(o - plane * out_plane);
      const int a = within / plan.out_width, b = within % plan.out_width;
      opmath_t v[kNumTaps];
      load_window_taps(x + plane * in_plane, plan, a * basis.stride - 1, b * basis.stride - 1,
                       v);
      const WindowStatistics<opmath_t> stats(basis.normalization, v);
      opmath_t slope;
      const opmath_t t = stats.normalize(basis.normalization, v[p], scale, slope);
      opmath_t values[kMaxFunctions];
      basis.family.values(t, values);
      const opmath_t dy = static_cast<opmath_t>(grad_out[o]);
      sums[0] += dy * activation_of(basis.silu, v[p]);
#pragma unroll
      for (int k = 0; k < kMaxFunctions; ++k) sums[1 + k] += dy * values[k];
    }
    const opmath_t total = block_sum(sums, scratch);
    if (threadIdx.x < kWindowWeightPitch) {
      partials[(p * kWindowWeightPitch + threadIdx.x) * blocks + blockIdx.x] = total;
    }
    __syncthreads();  // scratch is used again
  }
  {
    // The arctan scale: sum over the outputs of sum_p G_p (x_p - mean).
    opmath_t moment[1] = {opmath_t(0)};
    if (basis.normalization == kNormalizeArctan) {
#pragma unroll 1
      for (int64_t o = first + threadIdx.x; o < out_end; o += kThreadsPerBlock) {
        const int64_t plane = o / out_plane;
        const int within = static_cast<int>(o - plane * out_plane);
        const int a = within / plan.out_width, b = within % plan.out_width;
        opmath_t v[kNumTaps], grad[kNumTaps];
        load_window_taps(x + plane * in_plane, plan, a * basis.stride - 1, b * basis.stride - 1,
                         v);
        moment[0] += window_tap_grads(basis, weights, scale, v,
                                      static_cast<opmath_t>(grad_out[o]), grad);
      }
    }
    const opmath_t total = block_sum(moment, scratch);
    if (threadIdx.x == 0) partials[(kWindowSums - 1) * blocks + blockIdx.x] = total;
  }

  // dx: input position (plane, r, c) is tap (i, j) of output (a, b) where s a - 1 + i = r and
  // s b - 1 + j = c.
  const int64_t in_end = min(first + plan.chunk, plan.inputs);
#pragma unroll 1
  for (int64_t index = first + threadIdx.x; index < in_end; index += kThreadsPerBlock) {
    const int64_t plane = index / in_plane;
    const int within = static_cast<int>(index - plane * in_plane);
    const int r = within / plan.width, c = within % plan.width;
    opmath_t dx = opmath_t(0);
#pragma unroll 1
    for (int i = 0; i < 3; ++i) {
      const int row = r + 1 - i;  // s a
      if (row < 0 || row % basis.stride != 0 || row / basis.stride >= plan.out_height) continue;
      const int a = row / basis.stride;
#pragma unroll 1
      for (int j = 0; j < 3; ++j) {
        const int col = c + 1 - j;
        if (col < 0 || col % basis.stride != 0 || col / basis.stride >= plan.out_width) continue;
        const int b = col / basis.stride;
        opmath_t v[kNumTaps], grad[kNumTaps];
        load_window_taps(x + plane * in_plane, plan, a * basis.stride - 1, b * basis.stride - 1,
                         v);
        const opmath_t dy = static_cast<opmath_t>(
            grad_out[plane * out_plane + static_cast<int64_t>(a) * plan.out_width + b]);
        window_tap_grads(basis, weights, scale, v, dy, grad);
        dx += grad[i * 3 + j];
      }
    }
    grad_x[index] = static_cast<scalar_t>(dx);
  }
  if (!arrive_last(counter, gridDim.x)) return;

  // The last block: every sum over the blocks in index order, one warp per sum.
  MMRKAN_SHARED_ARRAY(opmath_t, totals, [kWindowSums]);
  const int warp = threadIdx.x / kWarpSize;
  for (int k = warp; k < kWindowSums; k += kWarpsPerBlock) {
    const opmath_t sum = warp_ordered_sum(partials + k * blocks, blocks);
    if (threadIdx.x % kWarpSize == 0) totals[k] = sum;
  }
  __syncthreads();
  const int functions = basis.family.num_functions;
  for (int k = threadIdx.x; k < kNumTaps * kWindowWeightPitch; k += kThreadsPerBlock) {
    const int p = k / kWindowWeightPitch;
    const int s = k % kWindowWeightPitch;
    if (s == 0) {
      grad_base_weight[p] = totals[k];
    } else if (s <= functions) {
      grad_poly_weight[p * functions + s - 1] = totals[k];
    }
  }
  if (threadIdx.x == 0) {
    grad_norm_scale[0] =
        basis.normalization == kNormalizeArctan ? totals[kWindowSums - 1] : opmath_t(0);
  }
}

}  // namespace cuda
}  // namespace mmrkan
