// CPU kernels of the KAN convolution (docs/ops.md, "KAN convolution").
//
// Planes (n, c) are processed in fixed chunks of a few planes. A chunk's planes are zero-padded
// FIRST into one flat buffer (plane after plane, each (H + 2) x (W + 2)), so padded taps are taps
// of value 0 as the definition requires. Two paths:
//
// * Pixelwise normalisations (none, tanh): t = normalize(x) and the basis are evaluated once per
//   padded pixel. With F_0 = act(x) and F_{1+k} = B_k(t), the kernel W[p][f] (f = 0:
//   base_weight, f >= 1: poly_weight) gives each padded pixel 9 "tap values"
//   phi_p = sum_f W[p][f] F_f, and an output is the sum of the tap values of its window:
//   y(o) = sum_p phi_p(origin(o) + offset(p)). Working on the flat chunk keeps the inner loops
//   long and vectorisable even for 7x7 planes.
// * Window normalisations (arctan, min-max, standardization): t depends on the statistics of the
//   window's 9 taps. The taps of the chunk's outputs are gathered into 9 arrays (one per tap p,
//   over the outputs), the window statistics computed, then for each tap t_p, the basis and its
//   weighted sum are evaluated over all outputs at once. The base term is summed per window.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../kan_ops.h"

// Loops whose body keeps small local arrays vectorise without `omp simd` (which would turn
// those arrays into per-lane memory), given that the iterations are independent.
#if defined(__GNUC__) && !defined(__clang__)
#define MMRKAN_IVDEP _Pragma("GCC ivdep")
#else
#define MMRKAN_IVDEP
#endif

namespace mmrkan {
namespace {

// Padded pixels per chunk: small enough for the chunk's work buffers to stay in the L2 cache.
constexpr int64_t kChunkPaddedPixels = 1024;
// Work buffers and the maps in them start on 64-byte boundaries (a vector store that crosses a
// cache line costs two), and maps are not a multiple of 4 KiB apart (loops that read one map and
// write another would stall on 4K aliasing): map strides are `length` plus kMapPadding bytes
// (twice that for the tap maps), rounded up to 64 bytes.
constexpr int64_t kAlignment = 64;
constexpr int64_t kMapPadding = 64;

template <typename T>
int64_t map_stride_of(int64_t length, int64_t padding_bytes) {
  const int64_t per_line = kAlignment / static_cast<int64_t>(sizeof(T));
  const int64_t values = length + padding_bytes / static_cast<int64_t>(sizeof(T));
  return (values + per_line - 1) / per_line * per_line;
}

// std::allocator with kAlignment-byte alignment.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}  // NOLINT: allocator conversion
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlignment)));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kAlignment)); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const AlignedAllocator<U>&) const { return false; }
};

template <typename T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

// ---------------------------------------------------------------------------------------------
// Branch-free elementwise functions: loops calling them vectorise (about 5x faster than loops
// calling std::tanh, which took most of the kernels' time). Selections and clamps work on the
// bit patterns: float comparisons would keep GCC from vectorising without -ffast-math.

// std::bit_cast is C++20; torch < 2.13 compiles extensions as C++17. A memcpy between locals
// compiles to the same register move.
template <typename To, typename From>
inline To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs types of the same size");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// Signed integer of the size of T, for bit patterns and cell indices.
template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <typename T>
inline Bits<T> bits_of(T v) {
  return bit_cast<Bits<T>>(v);
}

// By value: std::min returns a reference, which can keep GCC from vectorising.
template <typename I>
inline I min_bits(I a, I b) {
  return a < b ? a : b;
}

template <typename T>
inline T select(bool condition, T if_true, T if_false) {
  const Bits<T> mask = -static_cast<Bits<T>>(condition);
  return bit_cast<T>((mask & bits_of(if_true)) | (~mask & bits_of(if_false)));
}

// exp(y) for -87 <= y <= 0: y = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that n ln2
// is exact), exp(r) by its degree-7 Taylor polynomial (error < 1e-8), 2^n from exponent bits.
inline float exp_nonpositive(float y) {
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (y * 1.44269504f + round_magic) - round_magic;
  const float r = (y - n * 0.693145751953125f) - n * 1.4286068e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

// exp(-|x|), |x| clamped to 87 (NaN too: callers that must propagate NaN use x itself).
inline float exp_minus_abs(float x) {
  const int32_t abs_bits = bits_of(x) & 0x7fffffff;  // for |x| >= 0, bits order like values
  return exp_nonpositive(-bit_cast<float>(min_bits(abs_bits, bits_of(87.0f))));
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); below |x| = 0.55, where that form
// cancels, an odd polynomial least-squares fitted to tanh on [0, 0.55]. Error <= 1.6e-7
// relative; NaN stays NaN.
inline float tanh_float(float x) {
  const int32_t abs_bits = bits_of(x) & 0x7fffffff;
  const float a = bit_cast<float>(min_bits(abs_bits, bits_of(9.0f)));  // tanh(9) = 1f
  const float z = a * a;
  const float polynomial =
      a + a * z * (-0.33333322f + z * (0.13332713f + z * (-0.05386651f +
                                                          z * (0.021133164f - z * 0.006364915f))));
  const float e = exp_nonpositive(-2.0f * a);
  const float magnitude = select(abs_bits < bits_of(0.55f), polynomial, (1.0f - e) / (1.0f + e));
  const float value = bit_cast<float>(bits_of(magnitude) | (bits_of(x) & INT32_MIN));
  return select(abs_bits > bits_of(INFINITY), x, value);
}

// exp(-u^2); NaN stays NaN.
inline float gaussian_float(float u) {
  const float z = u * u;
  const float clamped = bit_cast<float>(min_bits(bits_of(z), bits_of(87.0f)));
  return select(bits_of(z) > bits_of(INFINITY), z, exp_nonpositive(-clamped));
}

// Logistic sigmoid: 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|).
inline float sigmoid_float(float x) {
  const float e = exp_minus_abs(x);
  return select(bits_of(x) < 0, e, 1.0f) / (1.0f + e);
}

// atan(x), Cephes' atanf: |x| reduced to [0, tan(pi/8)] by atan(a) = pi/2 + atan(-1/a)
// (a > tan(3pi/8)) or pi/4 + atan((a - 1) / (a + 1)) (a > tan(pi/8)), then an odd polynomial.
// Error about 2e-7 relative; NaN stays NaN, atan(+-inf) = +-pi/2.
inline float atan_float(float x) {
  const int32_t abs_bits = bits_of(x) & 0x7fffffff;
  const float a = bit_cast<float>(abs_bits);
  const bool large = abs_bits > bits_of(2.414213562373095f);
  const bool medium = abs_bits > bits_of(0.4142135623730950f);
  const float reduced = select(large, -1.0f / a, select(medium, (a - 1.0f) / (a + 1.0f), a));
  const float offset = select(large, 1.5707963267948966f, select(medium, 0.7853981633974483f, 0.0f));
  const float z = reduced * reduced;
  const float polynomial =
      (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z -
       3.33329491539e-1f) * z * reduced + reduced;
  const float magnitude = offset + polynomial;
  return bit_cast<float>(bits_of(magnitude) ^ (bits_of(x) & INT32_MIN));
}

// floor(s) for |s| < 2^22 (exact): round to nearest by the magic constant, minus 1 where that
// rounded up.
template <typename T>
inline T floor_small(T s) {
  const T magic = sizeof(T) == 4 ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^mantissa
  const T rounded = (s + magic) - magic;
  const Bits<T> above = bits_of(s - rounded) >> (8 * sizeof(T) - 1);  // -1 where s < rounded
  return rounded - bit_cast<T>(above & bits_of(T(1)));
}

template <typename T>
T tanh_of(T x) { return std::tanh(x); }
template <>
float tanh_of(float x) { return tanh_float(x); }

template <typename T>
T gaussian_of(T u) { return std::exp(-u * u); }
template <>
float gaussian_of(float u) { return gaussian_float(u); }

template <typename T>
T sigmoid_of(T x) { return T(1) / (T(1) + std::exp(-x)); }
template <>
float sigmoid_of(float x) { return sigmoid_float(x); }

template <typename T>
T atan_of(T x) { return std::atan(x); }
template <>
float atan_of(float x) { return atan_float(x); }

// ---------------------------------------------------------------------------------------------
// The basis functions B_0 .. B_{K-1} and their derivatives, evaluated over arrays of t.

template <typename T>
struct Basis {
  KanBasis family;
  int64_t num_functions;  // K
  // Polynomials: B_0 = 1, B_1 = a[1] t + b[1], B_n = (a[n] t + b[n]) B_{n-1} - c[n] B_{n-2}.
  std::vector<T> a, b, c;
  // rbf: centres low + k step, B_k = exp(-((t - centre) / width)^2).
  T low = 0, step = 0, inv_width = 0;
  // b_spline of order k: knots first_knot + i h, i = 0 .. grid_size + 2k.
  int spline_order = 0;
  T first_knot = 0, inv_h = 0, cell_middle = 0, cell_radius = 0;

  Basis(KanBasis family, int64_t num_functions, at::ArrayRef<double> params)
      : family(family), num_functions(num_functions) {
    if (is_polynomial()) {
      a.assign(num_functions, T(0));
      b.assign(num_functions, T(0));
      c.assign(num_functions, T(0));
      const double alpha = family == KanBasis::kJacobi ? params[0] : 0.0;
      const double beta = family == KanBasis::kJacobi ? params[1] : 0.0;
      for (int64_t n = 1; n < num_functions; ++n) {
        double an = 1, bn = 0, cn = 0;
        switch (family) {
          case KanBasis::kChebyshev:
            an = n == 1 ? 1 : 2;
            cn = 1;
            break;
          case KanBasis::kLegendre:
            an = (2.0 * n - 1) / n;
            cn = (n - 1.0) / n;
            break;
          case KanBasis::kHermite:
            an = 2;
            cn = 2.0 * (n - 1);
            break;
          default: {  // Jacobi
            if (n == 1) {
              an = (alpha + beta + 2) / 2;
              bn = (alpha - beta) / 2;
              break;
            }
            const double s = 2.0 * n + alpha + beta;
            const double denominator = 2.0 * n * (n + alpha + beta) * (s - 2);
            an = (s - 1) * s * (s - 2) / denominator;
            bn = (s - 1) * (alpha * alpha - beta * beta) / denominator;
            cn = 2 * (n + alpha - 1) * (n + beta - 1) * s / denominator;
          }
        }
        a[n] = static_cast<T>(an);
        b[n] = static_cast<T>(bn);
        c[n] = static_cast<T>(cn);
      }
    } else if (family == KanBasis::kRbf) {
      low = static_cast<T>(params[0]);
      step = static_cast<T>((params[1] - params[0]) / (num_functions - 1));
      inv_width = static_cast<T>((num_functions - 1) / (params[1] - params[0]));
    } else {
      spline_order = static_cast<int>(params[2]);
      const int64_t grid_size = num_functions - spline_order;
      const double h = (params[1] - params[0]) / grid_size;
      first_knot = static_cast<T>(params[0] - spline_order * h);
      inv_h = static_cast<T>(1 / h);
      // Cells 0 .. grid_size + 2k - 1 carry the basis; s = (t - first_knot) / h is clamped to
      // that range +- 1 (so that floor and the integer cell index stay small).
      const int64_t num_cells = grid_size + 2 * spline_order;
      cell_middle = static_cast<T>(num_cells / 2.0);
      cell_radius = static_cast<T>(num_cells / 2.0 + 1);
    }
  }

  bool is_polynomial() const { return family != KanBasis::kRbf && family != KanBasis::kBSpline; }
  // Scratch values per element that evaluate_basis needs (b_spline pieces and cells).
  int64_t scratch_per_element() const {
    return family == KanBasis::kBSpline ? 2 * (spline_order + 1) : 0;
  }
  int64_t cells_per_element() const { return family == KanBasis::kBSpline ? 1 : 0; }
};

template <typename T>
MMRKAN_CPU_MULTIVERSION void polynomial_values(const Basis<T>& basis, const T* t, int64_t n,
                                               T* values, int64_t ld, T* derivatives) {
  const int64_t num_functions = basis.num_functions;
  std::fill(values, values + n, T(1));
  if (derivatives != nullptr) std::fill(derivatives, derivatives + n, T(0));
  if (num_functions == 1) return;
  {
    const T a1 = basis.a[1], b1 = basis.b[1];
    T* out = values + ld;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = a1 * t[i] + b1;
    if (derivatives != nullptr) std::fill(derivatives + ld, derivatives + ld + n, a1);
  }
  // Chebyshev, RKAN's default, with its own (shorter) loops: a_k = 2, b_k = 0, c_k = 1.
  const bool chebyshev = basis.family == KanBasis::kChebyshev;
  for (int64_t k = 2; k < num_functions; ++k) {
    const T ak = basis.a[k], bk = basis.b[k], ck = basis.c[k];
    const T* prev = values + (k - 1) * ld;
    const T* prev2 = values + (k - 2) * ld;
    T* out = values + k * ld;
    if (chebyshev) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = T(2) * t[i] * prev[i] - prev2[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = (ak * t[i] + bk) * prev[i] - ck * prev2[i];
    }
    if (derivatives == nullptr) continue;
    const T* dprev = derivatives + (k - 1) * ld;
    const T* dprev2 = derivatives + (k - 2) * ld;
    T* dout = derivatives + k * ld;
    if (chebyshev) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        dout[i] = T(2) * prev[i] + T(2) * t[i] * dprev[i] - dprev2[i];
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        dout[i] = ak * prev[i] + (ak * t[i] + bk) * dprev[i] - ck * dprev2[i];
      }
    }
  }
}

template <typename T>
MMRKAN_CPU_MULTIVERSION void rbf_values(const Basis<T>& basis, const T* t, int64_t n, T* values,
                                        int64_t ld, T* derivatives) {
  for (int64_t k = 0; k < basis.num_functions; ++k) {
    const T centre = basis.low + T(k) * basis.step;
    const T inv_width = basis.inv_width;
    T* out = values + k * ld;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = gaussian_of((t[i] - centre) * inv_width);
    if (derivatives != nullptr) {
      T* dout = derivatives + k * ld;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        dout[i] = T(-2) * (t[i] - centre) * inv_width * inv_width * out[i];
      }
    }
  }
}

// e <- the cardinal B-splines of order m at r + u, r = 0..kOrder, from those of order m - 1:
// N_m(v) = (v N_{m-1}(v) + (m + 1 - v) N_{m-1}(v - 1)) / m (zero beyond order m's support).
template <int kOrder, typename T>
inline void raise_spline_order(T* e, T u, int m) {
  const T inv_m = T(1) / T(m);
#pragma GCC unroll 8
  for (int r = kOrder; r >= 1; --r) {
    e[r] = ((T(r) + u) * e[r] + (T(m + 1 - r) - u) * e[r - 1]) * inv_m;
  }
  e[0] = u * e[0] * inv_m;
}

// For each t: its cell (knot interval) index and the kOrder + 1 non-zero pieces there:
// B_{cell - r}(t) = N_k(r + u), u = the position in the cell, and their derivatives
// (N_{k-1}(r + u) - N_{k-1}(r - 1 + u)) / h.
template <int kOrder, typename T>
MMRKAN_CPU_MULTIVERSION void b_spline_pieces(const Basis<T>& basis, const T* t, int64_t n,
                                             Bits<T>* cells, T* pieces, T* piece_derivatives) {
  const T first_knot = basis.first_knot, inv_h = basis.inv_h;
  const T middle = basis.cell_middle, radius = basis.cell_radius;
  MMRKAN_IVDEP
  for (int64_t i = 0; i < n; ++i) {
    // s clamped to middle +- radius on the bit patterns (NaN too; NaN is restored later).
    const T d = (t[i] - first_knot) * inv_h - middle;
    const Bits<T> sign_mask = std::numeric_limits<Bits<T>>::min();
    const Bits<T> abs_bits = min_bits<Bits<T>>(bits_of(d) & ~sign_mask, bits_of(radius));
    const T s = middle + bit_cast<T>(abs_bits | (bits_of(d) & sign_mask));
    const T cell = floor_small(s);
    const T u = s - cell;
    T e[kOrder + 1] = {};
    e[0] = T(1);
#pragma GCC unroll 8
    for (int m = 1; m < kOrder; ++m) raise_spline_order<kOrder>(e, u, m);
    T lower[kOrder + 2] = {};  // order k - 1, shifted by one: lower[r + 1] = N_{k-1}(r + u)
#pragma GCC unroll 8
    for (int r = 0; r <= kOrder; ++r) lower[r + 1] = e[r];
    raise_spline_order<kOrder>(e, u, kOrder);
    cells[i] = static_cast<Bits<T>>(cell);
#pragma GCC unroll 8
    for (int r = 0; r <= kOrder; ++r) {
      pieces[r * n + i] = e[r];
      piece_derivatives[r * n + i] = (lower[r + 1] - lower[r]) * inv_h;
    }
  }
}

// B_j(t) = the piece r = cell - j where 0 <= r <= k, else 0; plus t - t, which is 0 for finite
// t and NaN for NaN or infinite t (as in efficient-KAN's recursion, where 0 * inf = NaN).
template <int kOrder, typename T>
MMRKAN_CPU_MULTIVERSION void b_spline_select(const T* t, const Bits<T>* cells, const T* pieces,
                                             int64_t n, int64_t num_functions, T* values,
                                             int64_t ld) {
  for (int64_t j = 0; j < num_functions; ++j) {
    T* out = values + j * ld;
    MMRKAN_IVDEP
    for (int64_t i = 0; i < n; ++i) {
      T value = t[i] - t[i];
#pragma GCC unroll 8
      for (int r = 0; r <= kOrder; ++r) {
        value += select(cells[i] == static_cast<Bits<T>>(j + r), pieces[r * n + i], T(0));
      }
      out[i] = value;
    }
  }
}

template <int kOrder, typename T>
void b_spline_values_of_order(const Basis<T>& basis, const T* t, int64_t n, T* values,
                              int64_t ld, T* derivatives, T* scratch, Bits<T>* cells) {
  T* pieces = scratch;
  T* piece_derivatives = pieces + (kOrder + 1) * n;
  b_spline_pieces<kOrder>(basis, t, n, cells, pieces, piece_derivatives);
  b_spline_select<kOrder>(t, cells, pieces, n, basis.num_functions, values, ld);
  if (derivatives != nullptr) {
    b_spline_select<kOrder>(t, cells, piece_derivatives, n, basis.num_functions, derivatives, ld);
  }
}

// values[k * ld + i] = B_k(t[i]) and, unless derivatives is null, derivatives[k * ld + i] =
// B'_k(t[i]). scratch and cells: basis.scratch_per_element() * n and cells_per_element() * n.
template <typename T>
void evaluate_basis(const Basis<T>& basis, const T* t, int64_t n, T* values, int64_t ld,
                    T* derivatives, T* scratch, Bits<T>* cells) {
  switch (basis.family) {
    case KanBasis::kRbf:
      rbf_values(basis, t, n, values, ld, derivatives);
      return;
    case KanBasis::kBSpline:
      switch (basis.spline_order) {
        case 1:
          return b_spline_values_of_order<1>(basis, t, n, values, ld, derivatives, scratch,
                                                cells);
        case 2:
          return b_spline_values_of_order<2>(basis, t, n, values, ld, derivatives, scratch,
                                                cells);
        case 3:
          return b_spline_values_of_order<3>(basis, t, n, values, ld, derivatives, scratch,
                                                cells);
        case 4:
          return b_spline_values_of_order<4>(basis, t, n, values, ld, derivatives, scratch,
                                                cells);
        default:
          return b_spline_values_of_order<5>(basis, t, n, values, ld, derivatives, scratch,
                                             cells);
      }
    default:
      polynomial_values(basis, t, n, values, ld, derivatives);
  }
}
static_assert(kMaxSplineOrder == 5, "evaluate_basis dispatches spline orders 1 to 5");

// ---------------------------------------------------------------------------------------------
// Shapes, options and the chunk layout.

struct ConvShape {
  int64_t planes, height, width, out_height, out_width, stride;
  int64_t num_functions;  // K
  int64_t num_features;   // 1 + K
  int64_t padded_width, padded_size;
  int64_t planes_per_chunk, num_chunks;
  KanNormalization normalization;
  KanBaseActivation activation;
  // Feature that is 1 everywhere (B_0 of the polynomial bases), or -1: its terms need no pass.
  int64_t constant_feature;

  int64_t plane_size() const { return height * width; }
  int64_t out_plane_size() const { return out_height * out_width; }
  int64_t tap_offset(int64_t p) const {
    return (p / kKernelSize) * padded_width + p % kKernelSize;
  }
  bool pixelwise() const {
    return normalization == KanNormalization::kNone || normalization == KanNormalization::kTanh;
  }
  // Kernel weights W[p][f] (9 * (1 + K)) and the norm_scale gradient after them.
  int64_t num_weight_grads() const { return kNumTaps * num_features + 1; }
};

// The chunks depend on the shape only (not on the thread count), so the chunked weight-gradient
// reductions are deterministic.
ConvShape conv_shape_of(const at::Tensor& x, const at::Tensor& poly_weight, int64_t stride,
                        int64_t basis, int64_t normalization, int64_t base_activation) {
  ConvShape s;
  s.planes = x.size(0) * x.size(1);
  s.height = x.size(2);
  s.width = x.size(3);
  s.out_height = kan_conv2d_output_size(s.height, stride);
  s.out_width = kan_conv2d_output_size(s.width, stride);
  s.stride = stride;
  s.num_functions = poly_weight.size(1);
  s.num_features = 1 + s.num_functions;
  s.padded_width = s.width + 2 * kPadding;
  s.padded_size = (s.height + 2 * kPadding) * s.padded_width;
  s.planes_per_chunk = std::max<int64_t>(1, kChunkPaddedPixels / s.padded_size);
  s.num_chunks = (s.planes + s.planes_per_chunk - 1) / s.planes_per_chunk;
  s.normalization = static_cast<KanNormalization>(normalization);
  s.activation = static_cast<KanBaseActivation>(base_activation);
  const auto family = static_cast<KanBasis>(basis);
  s.constant_feature = (family == KanBasis::kRbf || family == KanBasis::kBSpline) ? -1 : 1;
  return s;
}

// Offset of the window origin (top-left padded pixel) of every output of a full chunk.
std::vector<int64_t> window_origins(const ConvShape& s) {
  std::vector<int64_t> origins;
  origins.reserve(s.planes_per_chunk * s.out_plane_size());
  for (int64_t plane = 0; plane < s.planes_per_chunk; ++plane) {
    for (int64_t oy = 0; oy < s.out_height; ++oy) {
      for (int64_t ox = 0; ox < s.out_width; ++ox) {
        origins.push_back(plane * s.padded_size + oy * s.stride * s.padded_width + ox * s.stride);
      }
    }
  }
  return origins;
}

// The kernel as W[p][f], f = 0: base weight, f = 1..K: poly_weight[p][f - 1].
template <typename T>
std::vector<T> full_kernel(const at::Tensor& base_weight, const at::Tensor& poly_weight) {
  const int64_t num_functions = poly_weight.size(1);
  const T* base = base_weight.const_data_ptr<T>();
  const T* poly = poly_weight.const_data_ptr<T>();
  std::vector<T> kernel(kNumTaps * (1 + num_functions));
  for (int64_t p = 0; p < kNumTaps; ++p) {
    kernel[p * (1 + num_functions)] = base[p];
    for (int64_t k = 0; k < num_functions; ++k) {
      kernel[p * (1 + num_functions) + 1 + k] = poly[p * num_functions + k];
    }
  }
  return kernel;
}

// Work buffers of one chunk. `length` = planes * padded_size values per padded map, `outputs` =
// planes * Hout * Wout values per output map.
template <typename T>
struct ChunkBuffers {
  int64_t length, outputs;
  int64_t map_stride;          // of the feature and derivative maps (pixelwise path)
  int64_t tap_stride;          // of the tap maps: pixelwise path: padded maps; window: outputs
  Buffer<T> x;                 // padded x
  Buffer<T> activation_taps;   // window path, silu: taps of silu(x), then of silu'(x)
  Buffer<T> features;          // pixelwise path: F_0 .. F_K
  Buffer<T> derivatives;       // pixelwise path, backward: dF_f/dx
  Buffer<T> taps;              // pixelwise: phi_p or dL/dphi_p; window: x of tap p per output
  Buffer<T> grad_taps;         // window path, backward: dL/dt_p, then dL/dx_p, per output
  Buffer<T> window;            // window path: statistics per output, t, basis values
  Buffer<T> work;              // t (pixelwise), then a backward accumulator
  Buffer<T> grad_x;            // backward only
  Buffer<T> scratch;           // evaluate_basis's
  Buffer<Bits<T>> cells;       // evaluate_basis's
  Buffer<Bits<T>> window_indices;  // window path, min-max backward: argmin, argmax

  ChunkBuffers(const ConvShape& s, const Basis<T>& basis, bool backward)
      : length(s.planes_per_chunk * s.padded_size),
        outputs(s.planes_per_chunk * s.out_plane_size()),
        map_stride(map_stride_of<T>(length, kMapPadding)),
        tap_stride(s.pixelwise() ? map_stride_of<T>(length, 2 * kMapPadding) : outputs),
        // The pixelwise path pads into F_0 for the identity, and puts silu(x) in F_0.
        x(s.pixelwise() && s.activation == KanBaseActivation::kIdentity ? 0 : length),
        work(length),
        grad_x(backward ? length : 0) {
    if (s.pixelwise()) {
      features.resize(s.num_features * map_stride);
      derivatives.resize(backward ? s.num_features * map_stride : 0);
      taps.resize(kNumTaps * tap_stride);
      scratch.resize(basis.scratch_per_element() * length);
      cells.resize(basis.cells_per_element() * length);
    } else {
      taps.resize(kNumTaps * outputs);
      grad_taps.resize(backward ? kNumTaps * outputs : 0);
      if (s.activation == KanBaseActivation::kSilu) {
        activation_taps.resize((backward ? 2 : 1) * kNumTaps * outputs);
      }
      // 3 statistics, t, then K values and K derivatives.
      window.resize((4 + 2 * s.num_functions) * outputs);
      scratch.resize(basis.scratch_per_element() * outputs);
      cells.resize(basis.cells_per_element() * outputs);
      window_indices.resize(backward && s.normalization == KanNormalization::kMinMax
                                ? 2 * outputs : 0);
    }
  }

  T* feature(int64_t f) { return features.data() + f * map_stride; }
  T* derivative(int64_t f) { return derivatives.data() + f * map_stride; }
  T* tap(int64_t p) { return taps.data() + p * tap_stride; }
  T* grad_tap(int64_t p) { return grad_taps.data() + p * outputs; }
  T* statistic(int64_t i) { return window.data() + i * outputs; }
  T* window_t() { return window.data() + 3 * outputs; }
  T* window_values() { return window.data() + 4 * outputs; }
  T* window_derivatives(int64_t num_functions) {
    return window.data() + (4 + num_functions) * outputs;
  }
};

// Zero-pads `count` planes of x into `padded`.
template <typename scalar_t, typename T>
void pad_planes(const scalar_t* x, int64_t count, const ConvShape& s, T* padded) {
  std::fill(padded, padded + count * s.padded_size, T(0));
  for (int64_t plane = 0; plane < count; ++plane) {
    for (int64_t y = 0; y < s.height; ++y) {
      const scalar_t* in = x + plane * s.plane_size() + y * s.width;
      T* out = padded + plane * s.padded_size + (y + kPadding) * s.padded_width + kPadding;
      for (int64_t j = 0; j < s.width; ++j) out[j] = static_cast<T>(in[j]);
    }
  }
}

// silu(x) = x sigmoid(x) and, unless `derivative` is null, silu'(x) = sigmoid(x) (1 + x (1 -
// sigmoid(x))).
template <typename T>
MMRKAN_CPU_MULTIVERSION void silu_values(const T* x, int64_t length, T* out, T* derivative) {
#pragma omp simd
  for (int64_t i = 0; i < length; ++i) out[i] = x[i] * sigmoid_of(x[i]);
  if (derivative != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < length; ++i) {
      const T sigmoid = sigmoid_of(x[i]);
      derivative[i] = sigmoid * (T(1) + x[i] * (T(1) - sigmoid));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Pixelwise path.

// F_0 = act(x), F_{1+k} = B_k(t) on every padded pixel of the chunk, with dF_f/dx when
// `backward` (dF_0/dx only for silu: the identity's is 1). The padded x is b.x for silu and
// F_0 itself for the identity.
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void load_pixel_features(const scalar_t* x, int64_t count,
                                                 const ConvShape& s, const Basis<T>& basis,
                                                 ChunkBuffers<T>& b, bool backward) {
  const int64_t length = count * s.padded_size;
  const bool silu = s.activation == KanBaseActivation::kSilu;
  T* padded = silu ? b.x.data() : b.feature(0);
  pad_planes(x, count, s, padded);
  if (silu) silu_values(padded, length, b.feature(0), backward ? b.derivative(0) : nullptr);
  const T* t = padded;
  if (s.normalization == KanNormalization::kTanh) {
    T* tanh_x = b.work.data();
#pragma omp simd
    for (int64_t i = 0; i < length; ++i) tanh_x[i] = tanh_of(padded[i]);
    t = tanh_x;
  }
  evaluate_basis(basis, t, length, b.feature(1), b.map_stride,
                 backward ? b.derivative(1) : nullptr,
                 b.scratch.data(), b.cells.data());
  if (backward && s.normalization == KanNormalization::kTanh) {
    // dB/dx = B'(t) (1 - t^2); the constant B_0 has none.
    for (int64_t f = s.constant_feature == 1 ? 2 : 1; f < s.num_features; ++f) {
      T* out = b.derivative(f);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) out[i] *= T(1) - t[i] * t[i];
    }
  }
}

// The outputs of one chunk of `count` planes.
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void pixel_forward_chunk(const scalar_t* x, int64_t count,
                                                 const ConvShape& s, const Basis<T>& basis,
                                                 const T* kernel, const int64_t* origins,
                                                 ChunkBuffers<T>& b, scalar_t* out) {
  const int64_t length = count * s.padded_size;
  load_pixel_features(x, count, s, basis, b, /*backward=*/false);
  for (int64_t p = 0; p < kNumTaps; ++p) {
    T* phi = b.tap(p);
    const T w0 = kernel[p * s.num_features];
    const T bias = s.constant_feature < 0 ? T(0) : kernel[p * s.num_features + s.constant_feature];
    const T* f0 = b.feature(0);
#pragma omp simd
    for (int64_t i = 0; i < length; ++i) phi[i] = w0 * f0[i] + bias;
    for (int64_t f = 1; f < s.num_features; ++f) {
      if (f == s.constant_feature) continue;
      const T w = kernel[p * s.num_features + f];
      const T* feature = b.feature(f);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) phi[i] += w * feature[i];
    }
  }
  const int64_t num_outputs = count * s.out_plane_size();
  for (int64_t o = 0; o < num_outputs; ++o) {
    T sum = 0;
    for (int64_t p = 0; p < kNumTaps; ++p) sum += b.tap(p)[origins[o] + s.tap_offset(p)];
    out[o] = static_cast<scalar_t>(sum);
  }
}

// grad_x of one chunk of `count` planes (in b.grad_x, padded); adds its weight gradients W[p][f]
// to grad_kernel.
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void pixel_backward_chunk(const scalar_t* x, const scalar_t* grad_out,
                                                  int64_t count, const ConvShape& s,
                                                  const Basis<T>& basis, const T* kernel,
                                                  const int64_t* origins, ChunkBuffers<T>& b,
                                                  T* grad_kernel) {
  const int64_t length = count * s.padded_size;
  load_pixel_features(x, count, s, basis, b, /*backward=*/true);

  // dL/dphi_p: every output sends its gradient to the 9 pixels of its window.
  std::fill(b.taps.begin(), b.taps.end(), T(0));
  const int64_t num_outputs = count * s.out_plane_size();
  for (int64_t o = 0; o < num_outputs; ++o) {
    const T g = static_cast<T>(grad_out[o]);
    for (int64_t p = 0; p < kNumTaps; ++p) b.tap(p)[origins[o] + s.tap_offset(p)] += g;
  }

  // dL/dW[p][f] = sum_i dL/dphi_p(i) F_f(i), padded pixels included;
  // dL/dx = sum_f D_f sum_p W[p][f] dL/dphi_p with D_f = dF_f/dx.
  T* grad_x_flat = b.grad_x.data();
  T* grad_feature = b.work.data();
  for (int64_t f = 0; f < s.num_features; ++f) {
    if (f == s.constant_feature) {  // F_f = 1 and dF_f/dx = 0
      for (int64_t p = 0; p < kNumTaps; ++p) {
        const T* grad_phi = b.tap(p);
        T grad_w = 0;
#pragma omp simd reduction(+ : grad_w)
        for (int64_t i = 0; i < length; ++i) grad_w += grad_phi[i];
        grad_kernel[p * s.num_features + f] += grad_w;
      }
      continue;
    }
    const T* feature = b.feature(f);
    std::fill(grad_feature, grad_feature + length, T(0));
    // One pass per kernel row (3 taps) keeps grad_feature's loads and stores low.
    for (int64_t p = 0; p < kNumTaps; p += kKernelSize) {
      const T* grad_phi0 = b.tap(p);
      const T* grad_phi1 = b.tap(p + 1);
      const T* grad_phi2 = b.tap(p + 2);
      const T w0 = kernel[p * s.num_features + f];
      const T w1 = kernel[(p + 1) * s.num_features + f];
      const T w2 = kernel[(p + 2) * s.num_features + f];
      T grad_w0 = 0, grad_w1 = 0, grad_w2 = 0;
#pragma omp simd reduction(+ : grad_w0, grad_w1, grad_w2)
      for (int64_t i = 0; i < length; ++i) {
        const T v = feature[i];
        grad_w0 += grad_phi0[i] * v;
        grad_w1 += grad_phi1[i] * v;
        grad_w2 += grad_phi2[i] * v;
        grad_feature[i] += w0 * grad_phi0[i] + w1 * grad_phi1[i] + w2 * grad_phi2[i];
      }
      grad_kernel[p * s.num_features + f] += grad_w0;
      grad_kernel[(p + 1) * s.num_features + f] += grad_w1;
      grad_kernel[(p + 2) * s.num_features + f] += grad_w2;
    }
    const T* d = b.derivative(f);
    if (f > 0) {
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) grad_x_flat[i] += d[i] * grad_feature[i];
    } else if (s.activation == KanBaseActivation::kSilu) {
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) grad_x_flat[i] = d[i] * grad_feature[i];
    } else {
      std::copy(grad_feature, grad_feature + length, grad_x_flat);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Window path. Statistics per output: arctan: mean; min-max: min, 1 / (max - min + eps) and,
// for the backward, the first taps holding the min and the max; standardization: mean,
// 1 / (std + eps), 1 / (8 std) (0 where std = 0).

template <typename T>
MMRKAN_CPU_MULTIVERSION void window_statistics(const ConvShape& s, int64_t n, bool backward,
                                               ChunkBuffers<T>& b) {
  T* stat0 = b.statistic(0);
  T* stat1 = b.statistic(1);
  T* stat2 = b.statistic(2);
  const T eps = static_cast<T>(kNormalizationEps);
  if (s.normalization == KanNormalization::kMinMax) {
    std::copy(b.tap(0), b.tap(0) + n, stat0);
    std::copy(b.tap(0), b.tap(0) + n, stat1);
    for (int64_t p = 1; p < kNumTaps; ++p) {
      const T* v = b.tap(p);
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) {
        stat0[o] = v[o] < stat0[o] ? v[o] : stat0[o];
        stat1[o] = v[o] > stat1[o] ? v[o] : stat1[o];
      }
    }
    if (backward) {
      // The first tap equal to the min / max (as torch.argmin / argmax): taps in reverse order,
      // each overwriting; equality on the bit patterns of v + 0, which makes -0 equal to +0.
      Bits<T>* argmin = b.window_indices.data();
      Bits<T>* argmax = argmin + b.outputs;
      for (int64_t p = kNumTaps - 1; p >= 0; --p) {
        const T* v = b.tap(p);
        const Bits<T> index = static_cast<Bits<T>>(p);
#pragma omp simd
        for (int64_t o = 0; o < n; ++o) {
          const Bits<T> value = bits_of(v[o] + T(0));
          argmin[o] = value == bits_of(stat0[o] + T(0)) ? index : argmin[o];
          argmax[o] = value == bits_of(stat1[o] + T(0)) ? index : argmax[o];
        }
      }
    }
    // stat0 = min, stat1 = 1 / (max - min + eps).
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) stat1[o] = T(1) / (stat1[o] - stat0[o] + eps);
    return;
  }
  std::fill(stat0, stat0 + n, T(0));
  for (int64_t p = 0; p < kNumTaps; ++p) {
    const T* v = b.tap(p);
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) stat0[o] += v[o];
  }
#pragma omp simd
  for (int64_t o = 0; o < n; ++o) stat0[o] /= T(kNumTaps);  // exact for exact sums
  if (s.normalization == KanNormalization::kStandardization) {
    std::fill(stat1, stat1 + n, T(0));
    for (int64_t p = 0; p < kNumTaps; ++p) {
      const T* v = b.tap(p);
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) stat1[o] += (v[o] - stat0[o]) * (v[o] - stat0[o]);
    }
    // A loop of its own: std::sqrt's errno handling keeps a loop from vectorising.
    for (int64_t o = 0; o < n; ++o) stat1[o] = std::sqrt(stat1[o] / T(kNumTaps - 1));
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) {
      const T std = stat1[o];
      const T inverse = T(1) / (T(kNumTaps - 1) * std);  // inf where std = 0: not selected
      stat1[o] = T(1) / (std + eps);
      stat2[o] = select(bits_of(std) > 0, inverse, T(0));  // std >= 0
    }
  }
}

// t of tap p for the n outputs, from the tap values and the statistics; arctan also writes
// dt/du = (2 / pi) / (1 + u^2), u = (x - mean) scale, into `slope` when not null.
template <typename T>
MMRKAN_CPU_MULTIVERSION void window_normalize(const ConvShape& s, int64_t n, int64_t p, T scale,
                                              ChunkBuffers<T>& b, T* slope) {
  const T* v = b.tap(p);
  const T* stat0 = b.statistic(0);
  const T* stat1 = b.statistic(1);
  T* t = b.window_t();
  const T two_over_pi = static_cast<T>(0.63661977236758134308);  // 2 / pi
  switch (s.normalization) {
    case KanNormalization::kArctan:
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) t[o] = two_over_pi * atan_of((v[o] - stat0[o]) * scale);
      if (slope != nullptr) {
#pragma omp simd
        for (int64_t o = 0; o < n; ++o) {
          const T u = (v[o] - stat0[o]) * scale;
          slope[o] = two_over_pi / (T(1) + u * u);
        }
      }
      break;
    case KanNormalization::kMinMax:
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) t[o] = T(2) * (v[o] - stat0[o]) * stat1[o] - T(1);
      break;
    default:  // standardization
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) t[o] = (v[o] - stat0[o]) * stat1[o];
  }
}

// out[p * ld + o] = the padded map's pixel at tap p of output o, for the n outputs.
template <typename T>
void gather_window_taps(int64_t n, const ConvShape& s, const int64_t* origins, const T* padded,
                        T* out, int64_t ld) {
  for (int64_t p = 0; p < kNumTaps; ++p) {
    const int64_t offset = s.tap_offset(p);
    for (int64_t o = 0; o < n; ++o) out[p * ld + o] = padded[origins[o] + offset];
  }
}

// Pads the chunk and gathers the taps of x (b.tap(p)), and of silu(x) and (`backward`)
// silu'(x); returns the taps of act(x) (those of x for the identity), b.outputs apart.
template <typename scalar_t, typename T>
const T* load_window_taps(const scalar_t* x, int64_t count, const ConvShape& s,
                          const int64_t* origins, bool backward, ChunkBuffers<T>& b) {
  const int64_t n = count * s.out_plane_size();
  const int64_t length = count * s.padded_size;
  pad_planes(x, count, s, b.x.data());
  const int64_t ld = b.outputs;
  gather_window_taps(n, s, origins, b.x.data(), b.taps.data(), ld);
  if (s.activation != KanBaseActivation::kSilu) return b.taps.data();
  T* derivative = backward ? b.grad_x.data() : nullptr;  // free until the final scatter
  silu_values(b.x.data(), length, b.work.data(), derivative);
  gather_window_taps(n, s, origins, b.work.data(), b.activation_taps.data(), ld);
  if (backward) {
    gather_window_taps(n, s, origins, derivative, b.activation_taps.data() + kNumTaps * ld, ld);
  }
  return b.activation_taps.data();
}

template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void window_forward_chunk(const scalar_t* x, int64_t count,
                                                  const ConvShape& s, const Basis<T>& basis,
                                                  const T* kernel, T scale,
                                                  const int64_t* origins, ChunkBuffers<T>& b,
                                                  scalar_t* out) {
  const int64_t n = count * s.out_plane_size();
  const T* activated = load_window_taps(x, count, s, origins, /*backward=*/false, b);
  window_statistics(s, n, /*backward=*/false, b);
  T* y = b.work.data();
  std::fill(y, y + n, T(0));
  for (int64_t p = 0; p < kNumTaps; ++p) {
    const T w = kernel[p * s.num_features];
    const T* a = activated + p * b.outputs;
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) y[o] += w * a[o];
  }
  T* values = b.window_values();
  for (int64_t p = 0; p < kNumTaps; ++p) {
    window_normalize(s, n, p, scale, b, static_cast<T*>(nullptr));
    evaluate_basis(basis, b.window_t(), n, values, n, static_cast<T*>(nullptr),
                   b.scratch.data(), b.cells.data());
    for (int64_t k = 0; k < s.num_functions; ++k) {
      const T w = kernel[p * s.num_features + 1 + k];
      const T* value = values + k * n;
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) y[o] += w * value[o];
    }
  }
  for (int64_t o = 0; o < n; ++o) out[o] = static_cast<scalar_t>(y[o]);
}

// dL/dx_q of every tap of every output from G_p = dL/dt_p (in b.grad_taps, replaced by dL/dx_q);
// returns the arctan scale's gradient (0 otherwise). For arctan, G_p already holds
// dL/dt_p * dt_p/du_p.
template <typename T>
MMRKAN_CPU_MULTIVERSION T window_grad_taps(const ConvShape& s, int64_t n, T scale,
                                           ChunkBuffers<T>& b) {
  const T* stat0 = b.statistic(0);
  const T* stat1 = b.statistic(1);
  const T* stat2 = b.statistic(2);
  const Bits<T>* argmin = b.window_indices.data();
  const Bits<T>* argmax = argmin + b.outputs;
  T* sum_g = b.window_t();  // sum_p G_p
  T* moment = b.window_values();  // sum_p G_p (x_p - centre)
  std::fill(sum_g, sum_g + n, T(0));
  std::fill(moment, moment + n, T(0));
  for (int64_t p = 0; p < kNumTaps; ++p) {
    const T* g = b.grad_tap(p);
    const T* v = b.tap(p);
#pragma omp simd
    for (int64_t o = 0; o < n; ++o) {
      sum_g[o] += g[o];
      moment[o] += g[o] * (v[o] - stat0[o]);
    }
  }
  T grad_scale = 0;
  for (int64_t q = 0; q < kNumTaps; ++q) {
    T* g = b.grad_tap(q);
    const Bits<T> index = static_cast<Bits<T>>(q);
    switch (s.normalization) {
      case KanNormalization::kArctan:
        // dt_p/dx_q = slope_p scale (delta_pq - 1/9).
#pragma omp simd
        for (int64_t o = 0; o < n; ++o) {
          g[o] = scale * (g[o] - sum_g[o] * (T(1) / T(kNumTaps)));
        }
        break;
      case KanNormalization::kMinMax:
        // dt_p/dx_q = 2r (delta_pq - delta_q,argmin) - 2 (x_p - min) r^2
        //             (delta_q,argmax - delta_q,argmin).
#pragma omp simd
        for (int64_t o = 0; o < n; ++o) {
          const T r = stat1[o];
          const T at_min = T(2) * r * (r * moment[o] - sum_g[o]);
          const T at_max = T(-2) * r * r * moment[o];
          g[o] = T(2) * r * g[o] + select(argmin[o] == index, at_min, T(0)) +
                 select(argmax[o] == index, at_max, T(0));
        }
        break;
      default: {  // standardization
        // dt_p/dx_q = r (delta_pq - 1/9) - (x_p - mean) r^2 (x_q - mean) / (8 std).
        const T* v = b.tap(q);
#pragma omp simd
        for (int64_t o = 0; o < n; ++o) {
          const T r = stat1[o];
          g[o] = r * (g[o] - sum_g[o] * (T(1) / T(kNumTaps))) -
                 r * r * moment[o] * (v[o] - stat0[o]) * stat2[o];
        }
      }
    }
  }
  if (s.normalization == KanNormalization::kArctan) {
#pragma omp simd reduction(+ : grad_scale)
    for (int64_t o = 0; o < n; ++o) grad_scale += moment[o];
  }
  return grad_scale;
}

template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void window_backward_chunk(const scalar_t* x, const scalar_t* grad_out,
                                                   int64_t count, const ConvShape& s,
                                                   const Basis<T>& basis, const T* kernel,
                                                   T scale, const int64_t* origins,
                                                   ChunkBuffers<T>& b, T* grad_kernel) {
  const int64_t n = count * s.out_plane_size();
  const int64_t length = count * s.padded_size;
  const T* activated = load_window_taps(x, count, s, origins, /*backward=*/true, b);
  window_statistics(s, n, /*backward=*/true, b);
  T* g_out = b.work.data();  // grad_out in the compute type
  for (int64_t o = 0; o < n; ++o) g_out[o] = static_cast<T>(grad_out[o]);

  // Base term: dL/dbase_weight[p] = sum_o dy act(x_p).
  for (int64_t p = 0; p < kNumTaps; ++p) {
    const T* a = activated + p * b.outputs;
    T grad_w = 0;
#pragma omp simd reduction(+ : grad_w)
    for (int64_t o = 0; o < n; ++o) grad_w += g_out[o] * a[o];
    grad_kernel[p * s.num_features] += grad_w;
  }

  // Basis term per tap: dL/dpoly_weight[p][k] and G_p = dL/dt_p (times dt/du for arctan).
  T* values = b.window_values();
  T* derivatives = b.window_derivatives(s.num_functions);
  for (int64_t p = 0; p < kNumTaps; ++p) {
    T* grad_t = b.grad_tap(p);
    window_normalize(s, n, p, scale, b, grad_t);  // arctan: grad_t = dt/du for now
    evaluate_basis(basis, b.window_t(), n, values, n, derivatives, b.scratch.data(), b.cells.data());
    T* sum = b.window_t();  // free once the basis is evaluated
    std::fill(sum, sum + n, T(0));
    for (int64_t k = 0; k < s.num_functions; ++k) {
      const T w = kernel[p * s.num_features + 1 + k];
      const T* value = values + k * n;
      const T* derivative = derivatives + k * n;
      T grad_w = 0;
#pragma omp simd reduction(+ : grad_w)
      for (int64_t o = 0; o < n; ++o) {
        grad_w += g_out[o] * value[o];
        sum[o] += w * derivative[o];
      }
      grad_kernel[p * s.num_features + 1 + k] += grad_w;
    }
    if (s.normalization == KanNormalization::kArctan) {
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) grad_t[o] *= g_out[o] * sum[o];
    } else {
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) grad_t[o] = g_out[o] * sum[o];
    }
  }
  grad_kernel[kNumTaps * s.num_features] += window_grad_taps(s, n, scale, b);

  // The base term's dL/dx of each tap, dy base_weight[p] act'(x_p), then every tap's dL/dx
  // scattered to its pixel.
  const T* act_derivative =
      s.activation == KanBaseActivation::kSilu ? activated + kNumTaps * b.outputs : nullptr;
  for (int64_t p = 0; p < kNumTaps; ++p) {
    T* g = b.grad_tap(p);
    const T w = kernel[p * s.num_features];
    if (act_derivative == nullptr) {
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) g[o] += w * g_out[o];
    } else {
      const T* d = act_derivative + p * b.outputs;
#pragma omp simd
      for (int64_t o = 0; o < n; ++o) g[o] += w * g_out[o] * d[o];
    }
  }
  T* grad_x_flat = b.grad_x.data();
  std::fill(grad_x_flat, grad_x_flat + length, T(0));
  for (int64_t p = 0; p < kNumTaps; ++p) {
    const T* g = b.grad_tap(p);
    const int64_t offset = s.tap_offset(p);
    for (int64_t o = 0; o < n; ++o) grad_x_flat[origins[o] + offset] += g[o];
  }
}

// ---------------------------------------------------------------------------------------------
// Drivers.

struct ConvArgs {
  int64_t stride, basis, normalization, base_activation;
  at::ArrayRef<double> basis_params;
};

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& base_weight,
                    const at::Tensor& poly_weight, const at::Tensor& norm_scale,
                    const ConvArgs& args, const ConvShape& s, at::Tensor& out) {
  using T = at::opmath_type<scalar_t>;
  const Basis<T> basis(static_cast<KanBasis>(args.basis), s.num_functions, args.basis_params);
  const std::vector<T> kernel = full_kernel<T>(base_weight, poly_weight);
  const T scale = norm_scale.const_data_ptr<T>()[0];
  const std::vector<int64_t> origins = window_origins(s);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, s.num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    ChunkBuffers<T> b(s, basis, /*backward=*/false);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      const int64_t first_plane = chunk * s.planes_per_chunk;
      const int64_t count = std::min(s.planes_per_chunk, s.planes - first_plane);
      const scalar_t* chunk_x = x_data + first_plane * s.plane_size();
      scalar_t* chunk_out = out_data + first_plane * s.out_plane_size();
      if (s.pixelwise()) {
        pixel_forward_chunk(chunk_x, count, s, basis, kernel.data(), origins.data(), b,
                            chunk_out);
      } else {
        window_forward_chunk(chunk_x, count, s, basis, kernel.data(), scale, origins.data(), b,
                             chunk_out);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& base_weight, const at::Tensor& poly_weight,
                     const at::Tensor& norm_scale, const ConvArgs& args, const ConvShape& s,
                     at::Tensor& grad_x, at::Tensor& grad_base_weight,
                     at::Tensor& grad_poly_weight, at::Tensor& grad_norm_scale) {
  using T = at::opmath_type<scalar_t>;
  const Basis<T> basis(static_cast<KanBasis>(args.basis), s.num_functions, args.basis_params);
  const std::vector<T> kernel = full_kernel<T>(base_weight, poly_weight);
  const T scale = norm_scale.const_data_ptr<T>()[0];
  const std::vector<int64_t> origins = window_origins(s);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
  scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
  const int64_t num_grads = s.num_weight_grads();
  // Each chunk writes its own partial weight gradients; they are added in chunk order below.
  std::vector<T> partial(s.num_chunks * num_grads, T(0));

  at::parallel_for(0, s.num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    ChunkBuffers<T> b(s, basis, /*backward=*/true);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      const int64_t first_plane = chunk * s.planes_per_chunk;
      const int64_t count = std::min(s.planes_per_chunk, s.planes - first_plane);
      const scalar_t* chunk_x = x_data + first_plane * s.plane_size();
      const scalar_t* chunk_grad_out = grad_out_data + first_plane * s.out_plane_size();
      T* chunk_grads = partial.data() + chunk * num_grads;
      if (s.pixelwise()) {
        pixel_backward_chunk(chunk_x, chunk_grad_out, count, s, basis, kernel.data(),
                             origins.data(), b, chunk_grads);
      } else {
        window_backward_chunk(chunk_x, chunk_grad_out, count, s, basis, kernel.data(), scale,
                              origins.data(), b, chunk_grads);
      }
      scalar_t* chunk_grad_x = grad_x_data + first_plane * s.plane_size();
      for (int64_t plane = 0; plane < count; ++plane) {
        for (int64_t y = 0; y < s.height; ++y) {
          const T* in =
              b.grad_x.data() + plane * s.padded_size + (y + kPadding) * s.padded_width + kPadding;
          scalar_t* row = chunk_grad_x + plane * s.plane_size() + y * s.width;
          for (int64_t j = 0; j < s.width; ++j) row[j] = static_cast<scalar_t>(in[j]);
        }
      }
    }
  });

  std::vector<double> totals(num_grads, 0.0);
  for (int64_t chunk = 0; chunk < s.num_chunks; ++chunk) {
    for (int64_t i = 0; i < num_grads; ++i) totals[i] += partial[chunk * num_grads + i];
  }
  T* grad_base = grad_base_weight.mutable_data_ptr<T>();
  T* grad_poly = grad_poly_weight.mutable_data_ptr<T>();
  for (int64_t p = 0; p < kNumTaps; ++p) {
    grad_base[p] = static_cast<T>(totals[p * s.num_features]);
    for (int64_t k = 0; k < s.num_functions; ++k) {
      grad_poly[p * s.num_functions + k] = static_cast<T>(totals[p * s.num_features + 1 + k]);
    }
  }
  grad_norm_scale.mutable_data_ptr<T>()[0] = static_cast<T>(totals[kNumTaps * s.num_features]);
}

at::Tensor kan_conv2d_forward_cpu(const at::Tensor& x, const at::Tensor& base_weight,
                                  const at::Tensor& poly_weight, const at::Tensor& norm_scale,
                                  int64_t stride, int64_t basis, int64_t normalization,
                                  int64_t base_activation, at::ArrayRef<double> basis_params) {
  check_kan_conv2d_args(x, base_weight, poly_weight, norm_scale, stride, basis, normalization,
                        base_activation, basis_params);
  const ConvShape s =
      conv_shape_of(x, poly_weight, stride, basis, normalization, base_activation);
  const ConvArgs args{stride, basis, normalization, base_activation, basis_params};
  at::Tensor out = at::empty({x.size(0), x.size(1), s.out_height, s.out_width}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_forward_cpu", [&] {
                                    forward_kernel<scalar_t>(x, base_weight, poly_weight,
                                                             norm_scale, args, s, out);
                                  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& base_weight,
    const at::Tensor& poly_weight, const at::Tensor& norm_scale, int64_t stride, int64_t basis,
    int64_t normalization, int64_t base_activation, at::ArrayRef<double> basis_params) {
  check_kan_conv2d_args(x, base_weight, poly_weight, norm_scale, stride, basis, normalization,
                        base_activation, basis_params);
  const ConvShape s =
      conv_shape_of(x, poly_weight, stride, basis, normalization, base_activation);
  check_grad_out("kan_conv2d_backward", grad_out, x,
                 {x.size(0), x.size(1), s.out_height, s.out_width});
  const ConvArgs args{stride, basis, normalization, base_activation, basis_params};
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_base_weight = at::empty_like(base_weight);
  at::Tensor grad_poly_weight = at::empty_like(poly_weight);
  at::Tensor grad_norm_scale = at::empty_like(norm_scale);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_backward_cpu", [&] {
                                    backward_kernel<scalar_t>(
                                        grad_out, x, base_weight, poly_weight, norm_scale, args,
                                        s, grad_x, grad_base_weight, grad_poly_weight,
                                        grad_norm_scale);
                                  });
  return {grad_x, grad_base_weight, grad_poly_weight, grad_norm_scale};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CPU, m) {
  m.impl("kan_conv2d_forward", &kan_conv2d_forward_cpu);
  m.impl("kan_conv2d_backward", &kan_conv2d_backward_cpu);
}

}  // namespace mmrkan
