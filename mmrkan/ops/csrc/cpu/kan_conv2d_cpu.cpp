// CPU kernels of the KAN convolution (docs/ops.md).
//
// Planes (n, c) are processed in fixed chunks of a few planes. A chunk's planes are zero-padded
// FIRST into one flat buffer (plane after plane, each (H + 2) x (W + 2)), then the basis is
// evaluated on every padded pixel, so padded taps hold B_k(0) as the definition requires. With
// F_0 = x and F_{1+k} = B_k(x), the kernel W[p][f] (f = 0: base_weight, f >= 1: poly_weight)
// gives each padded pixel 9 "tap values" phi_p = sum_f W[p][f] F_f, and an output is the sum of
// the tap values of its window: y(o) = sum_p phi_p(origin(o) + offset(p)). Working on the flat
// chunk keeps the inner loops long and vectorisable even for 7x7 planes.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "../kan_ops.h"

namespace mmrkan {
namespace {

// Padded pixels per chunk: small enough for the chunk's work buffers to stay in the L2 cache.
constexpr int64_t kChunkPaddedPixels = 1024;

struct ConvShape {
  int64_t planes, height, width, out_height, out_width, stride;
  int64_t num_functions;  // K
  int64_t num_features;   // 1 + K
  int64_t padded_width, padded_size;
  int64_t planes_per_chunk, num_chunks;
  KanBasis basis;
  // Feature that is 1 everywhere (T_0 of the Chebyshev basis), or -1: its terms need no pass.
  int64_t constant_feature;

  int64_t plane_size() const { return height * width; }
  int64_t out_plane_size() const { return out_height * out_width; }
  int64_t tap_offset(int64_t p) const {
    return (p / kKernelSize) * padded_width + p % kKernelSize;
  }
};

// Branch-free fp32 exp and tanh: loops calling them vectorise (about 5x faster than loops
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

inline int32_t float_bits(float v) { return bit_cast<int32_t>(v); }

inline float select(bool condition, float if_true, float if_false) {
  const int32_t mask = -static_cast<int32_t>(condition);
  return bit_cast<float>((mask & float_bits(if_true)) | (~mask & float_bits(if_false)));
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

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); below |x| = 0.55, where that form
// cancels, an odd polynomial least-squares fitted to tanh on [0, 0.55]. Error <= 1.6e-7
// relative; NaN stays NaN.
inline float tanh_float(float x) {
  const int32_t abs_bits = float_bits(x) & 0x7fffffff;  // for |x| >= 0, bits order like values
  const float a = bit_cast<float>(std::min(abs_bits, float_bits(9.0f)));  // tanh(9) = 1f
  const float z = a * a;
  const float polynomial =
      a + a * z * (-0.33333322f + z * (0.13332713f + z * (-0.05386651f +
                                                          z * (0.021133164f - z * 0.006364915f))));
  const float e = exp_nonpositive(-2.0f * a);
  const float magnitude = select(abs_bits < float_bits(0.55f), polynomial, (1.0f - e) / (1.0f + e));
  const float value = bit_cast<float>(float_bits(magnitude) | (float_bits(x) & INT32_MIN));
  return select(abs_bits > float_bits(INFINITY), x, value);
}

// exp(-u^2); NaN stays NaN.
inline float gaussian_float(float u) {
  const float z = u * u;
  const float clamped = bit_cast<float>(std::min(float_bits(z), float_bits(87.0f)));
  return select(float_bits(z) > float_bits(INFINITY), z, exp_nonpositive(-clamped));
}

template <typename T>
T basis_tanh(T x) {
  return std::tanh(x);
}

template <>
float basis_tanh(float x) {
  return tanh_float(x);
}

template <typename T>
T basis_gaussian(T u) {
  return std::exp(-u * u);
}

template <>
float basis_gaussian(float u) {
  return gaussian_float(u);
}

// The chunks depend on the shape only (not on the thread count), so the chunked weight-gradient
// reductions are deterministic.
ConvShape conv_shape_of(const at::Tensor& x, const at::Tensor& poly_weight, int64_t stride,
                        int64_t basis) {
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
  s.basis = static_cast<KanBasis>(basis);
  s.constant_feature = s.basis == KanBasis::kChebyshev ? 1 : -1;
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

// Work buffers of one chunk, each `length` = planes * padded_size values per map.
template <typename T>
struct ChunkBuffers {
  int64_t length;
  std::vector<T> features;     // F_0 .. F_K
  std::vector<T> derivatives;  // dB_k/dx, backward only
  std::vector<T> taps;         // phi_p (forward) or dL/dphi_p (backward)
  std::vector<T> work;         // tanh values, then a backward accumulator
  std::vector<T> grad_x;       // backward only

  ChunkBuffers(const ConvShape& s, bool backward)
      : length(s.planes_per_chunk * s.padded_size),
        features(s.num_features * length),
        derivatives(backward ? s.num_functions * length : 0),
        taps(kNumTaps * length),
        work(length),
        grad_x(backward ? length : 0) {}

  T* feature(int64_t f) { return features.data() + f * length; }
  T* derivative(int64_t k) { return derivatives.data() + k * length; }
  T* tap(int64_t p) { return taps.data() + p * length; }
};

// Zero-pads `count` planes of x into F_0, then evaluates the basis on every padded pixel.
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void load_features(const scalar_t* x, int64_t count, const ConvShape& s,
                                           ChunkBuffers<T>& b) {
  const int64_t length = count * s.padded_size;
  T* f0 = b.feature(0);
  std::fill(f0, f0 + length, T(0));
  for (int64_t plane = 0; plane < count; ++plane) {
    for (int64_t y = 0; y < s.height; ++y) {
      const scalar_t* in = x + plane * s.plane_size() + y * s.width;
      T* out = f0 + plane * s.padded_size + (y + kPadding) * s.padded_width + kPadding;
      for (int64_t j = 0; j < s.width; ++j) out[j] = static_cast<T>(in[j]);
    }
  }
  if (s.basis == KanBasis::kChebyshev) {
    T* t = b.work.data();
#pragma omp simd
    for (int64_t i = 0; i < length; ++i) t[i] = basis_tanh(f0[i]);
    std::fill(b.feature(1), b.feature(1) + length, T(1));  // T_0
    if (s.num_functions > 1) std::copy(t, t + length, b.feature(2));  // T_1
    for (int64_t k = 2; k < s.num_functions; ++k) {
      T* out = b.feature(1 + k);
      const T* prev = b.feature(k);
      const T* prev2 = b.feature(k - 1);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) out[i] = T(2) * t[i] * prev[i] - prev2[i];
    }
  } else {
    // Gaussian bumps: centres linspace(-1, 1, K), width 2 / (K - 1), no tanh.
    const T inv_width = T(s.num_functions - 1) / T(2);
    for (int64_t k = 0; k < s.num_functions; ++k) {
      const T centre = T(-1) + T(2) * T(k) / T(s.num_functions - 1);
      T* out = b.feature(1 + k);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) {
        out[i] = basis_gaussian((f0[i] - centre) * inv_width);
      }
    }
  }
}

// dB_k/dx on every pixel of the chunk, from its features. Chebyshev: T'_k(t) (1 - t^2) with
// T'_0 = 0, T'_1 = 1, T'_k = 2 T_{k-1} + 2 t T'_{k-1} - T'_{k-2}; rbf: -2 u / width * B_k with
// u = (x - c) / width.
template <typename T>
MMRKAN_CPU_MULTIVERSION void load_derivatives(int64_t count, const ConvShape& s,
                                              ChunkBuffers<T>& b) {
  const int64_t length = count * s.padded_size;
  if (s.basis == KanBasis::kChebyshev) {
    std::fill(b.derivative(0), b.derivative(0) + length, T(0));
    if (s.num_functions > 1) std::fill(b.derivative(1), b.derivative(1) + length, T(1));
    for (int64_t k = 2; k < s.num_functions; ++k) {
      const T* t = b.feature(2);
      const T* cheb_prev = b.feature(k);  // T_{k-1}
      const T* prev = b.derivative(k - 1);
      const T* prev2 = b.derivative(k - 2);
      T* out = b.derivative(k);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) {
        out[i] = T(2) * cheb_prev[i] + T(2) * t[i] * prev[i] - prev2[i];
      }
    }
    for (int64_t k = 1; k < s.num_functions; ++k) {
      const T* t = b.feature(2);
      T* out = b.derivative(k);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) out[i] *= T(1) - t[i] * t[i];
    }
  } else {
    const T inv_width = T(s.num_functions - 1) / T(2);
    const T* x = b.feature(0);
    for (int64_t k = 0; k < s.num_functions; ++k) {
      const T centre = T(-1) + T(2) * T(k) / T(s.num_functions - 1);
      const T* bump = b.feature(1 + k);
      T* out = b.derivative(k);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) {
        out[i] = T(-2) * (x[i] - centre) * inv_width * inv_width * bump[i];
      }
    }
  }
}

// The outputs of one chunk of `count` planes.
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void forward_chunk(const scalar_t* x, int64_t count, const ConvShape& s,
                                           const T* kernel, const int64_t* origins,
                                           ChunkBuffers<T>& b, scalar_t* out) {
  const int64_t length = count * s.padded_size;
  load_features(x, count, s, b);
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

// grad_x of one chunk of `count` planes; adds its weight gradients W[p][f] to grad_kernel.
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void backward_chunk(const scalar_t* x, const scalar_t* grad_out,
                                            int64_t count, const ConvShape& s, const T* kernel,
                                            const int64_t* origins, ChunkBuffers<T>& b,
                                            T* grad_kernel, scalar_t* grad_x) {
  const int64_t length = count * s.padded_size;
  load_features(x, count, s, b);
  load_derivatives(count, s, b);

  // dL/dphi_p: every output sends its gradient to the 9 pixels of its window.
  std::fill(b.taps.begin(), b.taps.end(), T(0));
  const int64_t num_outputs = count * s.out_plane_size();
  for (int64_t o = 0; o < num_outputs; ++o) {
    const T g = static_cast<T>(grad_out[o]);
    for (int64_t p = 0; p < kNumTaps; ++p) b.tap(p)[origins[o] + s.tap_offset(p)] += g;
  }

  // dL/dW[p][f] = sum_i dL/dphi_p(i) F_f(i), padded pixels included;
  // dL/dx = sum_f D_f sum_p W[p][f] dL/dphi_p with D_0 = 1, D_{1+k} = dB_k/dx.
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
    if (f == 0) {
      std::copy(grad_feature, grad_feature + length, grad_x_flat);
    } else {
      const T* d = b.derivative(f - 1);
#pragma omp simd
      for (int64_t i = 0; i < length; ++i) grad_x_flat[i] += d[i] * grad_feature[i];
    }
  }
  for (int64_t plane = 0; plane < count; ++plane) {
    for (int64_t y = 0; y < s.height; ++y) {
      const T* in =
          grad_x_flat + plane * s.padded_size + (y + kPadding) * s.padded_width + kPadding;
      scalar_t* out = grad_x + plane * s.plane_size() + y * s.width;
      for (int64_t j = 0; j < s.width; ++j) out[j] = static_cast<scalar_t>(in[j]);
    }
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& base_weight,
                    const at::Tensor& poly_weight, const ConvShape& s, at::Tensor& out) {
  using T = at::opmath_type<scalar_t>;
  const std::vector<T> kernel = full_kernel<T>(base_weight, poly_weight);
  const std::vector<int64_t> origins = window_origins(s);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, s.num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    ChunkBuffers<T> b(s, /*backward=*/false);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      const int64_t first_plane = chunk * s.planes_per_chunk;
      const int64_t count = std::min(s.planes_per_chunk, s.planes - first_plane);
      forward_chunk(x_data + first_plane * s.plane_size(), count, s, kernel.data(),
                    origins.data(), b, out_data + first_plane * s.out_plane_size());
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& base_weight, const at::Tensor& poly_weight,
                     const ConvShape& s, at::Tensor& grad_x, at::Tensor& grad_base_weight,
                     at::Tensor& grad_poly_weight) {
  using T = at::opmath_type<scalar_t>;
  const std::vector<T> kernel = full_kernel<T>(base_weight, poly_weight);
  const std::vector<int64_t> origins = window_origins(s);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
  scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
  const int64_t kernel_size = kNumTaps * s.num_features;
  // Each chunk writes its own partial weight gradients; they are added in chunk order below.
  std::vector<T> partial(s.num_chunks * kernel_size, T(0));

  at::parallel_for(0, s.num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    ChunkBuffers<T> b(s, /*backward=*/true);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      const int64_t first_plane = chunk * s.planes_per_chunk;
      const int64_t count = std::min(s.planes_per_chunk, s.planes - first_plane);
      backward_chunk(x_data + first_plane * s.plane_size(),
                     grad_out_data + first_plane * s.out_plane_size(), count, s, kernel.data(),
                     origins.data(), b, partial.data() + chunk * kernel_size,
                     grad_x_data + first_plane * s.plane_size());
    }
  });

  std::vector<double> totals(kernel_size, 0.0);
  for (int64_t chunk = 0; chunk < s.num_chunks; ++chunk) {
    for (int64_t i = 0; i < kernel_size; ++i) totals[i] += partial[chunk * kernel_size + i];
  }
  T* grad_base = grad_base_weight.mutable_data_ptr<T>();
  T* grad_poly = grad_poly_weight.mutable_data_ptr<T>();
  for (int64_t p = 0; p < kNumTaps; ++p) {
    grad_base[p] = static_cast<T>(totals[p * s.num_features]);
    for (int64_t k = 0; k < s.num_functions; ++k) {
      grad_poly[p * s.num_functions + k] = static_cast<T>(totals[p * s.num_features + 1 + k]);
    }
  }
}

at::Tensor kan_conv2d_forward_cpu(const at::Tensor& x, const at::Tensor& base_weight,
                                  const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  check_kan_conv2d_args(x, base_weight, poly_weight, stride, basis);
  const ConvShape s = conv_shape_of(x, poly_weight, stride, basis);
  at::Tensor out = at::empty({x.size(0), x.size(1), s.out_height, s.out_width}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_forward_cpu", [&] {
                                    forward_kernel<scalar_t>(x, base_weight, poly_weight, s, out);
                                  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv2d_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& base_weight,
    const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  check_kan_conv2d_args(x, base_weight, poly_weight, stride, basis);
  const ConvShape s = conv_shape_of(x, poly_weight, stride, basis);
  check_grad_out("kan_conv2d_backward", grad_out, x,
                 {x.size(0), x.size(1), s.out_height, s.out_width});
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_base_weight = at::empty_like(base_weight);
  at::Tensor grad_poly_weight = at::empty_like(poly_weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "kan_conv2d_backward_cpu", [&] {
                                    backward_kernel<scalar_t>(grad_out, x, base_weight,
                                                              poly_weight, s, grad_x,
                                                              grad_base_weight, grad_poly_weight);
                                  });
  return {grad_x, grad_base_weight, grad_poly_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CPU, m) {
  m.impl("kan_conv2d_forward", &kan_conv2d_forward_cpu);
  m.impl("kan_conv2d_backward", &kan_conv2d_backward_cpu);
}

}  // namespace mmrkan
