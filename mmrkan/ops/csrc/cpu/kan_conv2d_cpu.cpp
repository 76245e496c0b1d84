// CPU kernels of the KAN convolution (kan-facts.md section 4).
//
// Each (n, c) plane is handled by one task: its input is zero-padded FIRST, then the 1 + K
// feature maps [x, B_0(x), ..., B_{K-1}(x)] of the padded plane are built in a task-local buffer
// (padded pixels hold [0, B_0(0), ...]), and the output is a valid 3x3 convolution of the
// feature maps with the kernel W[p][f] (f = 0: base_weight, f >= 1: poly_weight[:, f - 1]),
// shared by all planes. This is the exact "equivalent form" of the facts, without the 9x unfold.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "../kan_ops.h"

namespace mmrkan {
namespace {

// Elements per parallel task, and per deterministic reduction chunk in the backward.
constexpr int64_t kChunkElements = 1 << 15;

struct ConvShape {
  int64_t planes, height, width, out_height, out_width, stride;
  int64_t num_functions;  // K
  int64_t num_features;   // 1 + K
  int64_t padded_height, padded_width, padded_size;
  KanBasis basis;
};

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
  s.padded_height = s.height + 2 * kPadding;
  s.padded_width = s.width + 2 * kPadding;
  s.padded_size = s.padded_height * s.padded_width;
  s.basis = static_cast<KanBasis>(basis);
  return s;
}

// The kernel as W[p][f], f = 0: base weight, f = 1..K: poly_weight[p][f - 1].
template <typename T>
std::vector<T> full_kernel(const at::Tensor& base_weight, const at::Tensor& poly_weight) {
  const int64_t num_features = 1 + poly_weight.size(1);
  const T* base = base_weight.const_data_ptr<T>();
  const T* poly = poly_weight.const_data_ptr<T>();
  std::vector<T> kernel(kNumTaps * num_features);
  for (int64_t p = 0; p < kNumTaps; ++p) {
    kernel[p * num_features] = base[p];
    for (int64_t k = 0; k + 1 < num_features; ++k) {
      kernel[p * num_features + 1 + k] = poly[p * (num_features - 1) + k];
    }
  }
  return kernel;
}

// Gaussian bump parameters of the rbf basis: centres linspace(-1, 1, K), width 2 / (K - 1).
template <typename T>
T rbf_centre(int64_t k, int64_t num_functions) {
  return T(-1) + T(2) * T(k) / T(num_functions - 1);
}

template <typename T>
T rbf_inv_width(int64_t num_functions) {
  return T(num_functions - 1) / T(2);
}

// Feature maps [x, B_0(x), ..., B_{K-1}(x)] of `count` values (one row of a plane).
// feature f of element j is at features[f * stride + j]; `t` is scratch of `count` values.
template <typename scalar_t, typename T>
void row_features(const scalar_t* x, int64_t count, const ConvShape& s, T* features,
                  int64_t stride, T* t) {
  T* f0 = features;
  for (int64_t j = 0; j < count; ++j) f0[j] = static_cast<T>(x[j]);
  if (s.basis == KanBasis::kChebyshev) {
    for (int64_t j = 0; j < count; ++j) t[j] = std::tanh(f0[j]);
    T* cheb0 = features + stride;
    for (int64_t j = 0; j < count; ++j) cheb0[j] = T(1);
    if (s.num_functions > 1) {
      T* cheb1 = features + 2 * stride;
      for (int64_t j = 0; j < count; ++j) cheb1[j] = t[j];
    }
    for (int64_t k = 2; k < s.num_functions; ++k) {
      T* out = features + (1 + k) * stride;
      const T* prev = out - stride;
      const T* prev2 = out - 2 * stride;
#pragma omp simd
      for (int64_t j = 0; j < count; ++j) out[j] = T(2) * t[j] * prev[j] - prev2[j];
    }
  } else {
    const T inv_width = rbf_inv_width<T>(s.num_functions);
    for (int64_t k = 0; k < s.num_functions; ++k) {
      const T centre = rbf_centre<T>(k, s.num_functions);
      T* out = features + (1 + k) * stride;
      for (int64_t j = 0; j < count; ++j) {
        const T u = (f0[j] - centre) * inv_width;
        out[j] = std::exp(-u * u);
      }
    }
  }
}

// Builds the padded feature maps of one plane: features[f * padded_size + (y * padded_width + x)].
template <typename scalar_t, typename T>
void plane_features(const scalar_t* x, const ConvShape& s, T* features, T* scratch) {
  // Padded pixels hold the features of x = 0.
  const scalar_t zero(0);
  row_features(&zero, 1, s, scratch, 1, scratch + s.num_features);
  for (int64_t f = 0; f < s.num_features; ++f) {
    std::fill(features + f * s.padded_size, features + (f + 1) * s.padded_size, scratch[f]);
  }
  for (int64_t y = 0; y < s.height; ++y) {
    row_features(x + y * s.width, s.width, s,
                 features + (y + kPadding) * s.padded_width + kPadding, s.padded_size, scratch);
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& base_weight,
                    const at::Tensor& poly_weight, const ConvShape& s, at::Tensor& out) {
  using T = at::opmath_type<scalar_t>;
  const std::vector<T> kernel = full_kernel<T>(base_weight, poly_weight);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  const int64_t plane_size = s.height * s.width;
  const int64_t grain = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, plane_size));

  at::parallel_for(0, s.planes, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> features(s.num_features * s.padded_size);
    std::vector<T> scratch(std::max(s.width, s.num_features + 1));
    std::vector<T> out_row(s.out_width);
    for (int64_t plane = begin; plane < end; ++plane) {
      plane_features(x_data + plane * plane_size, s, features.data(), scratch.data());
      scalar_t* out_plane = out_data + plane * s.out_height * s.out_width;
      for (int64_t oy = 0; oy < s.out_height; ++oy) {
        std::fill(out_row.begin(), out_row.end(), T(0));
        for (int64_t f = 0; f < s.num_features; ++f) {
          for (int64_t p = 0; p < kNumTaps; ++p) {
            const T w = kernel[p * s.num_features + f];
            const T* in = features.data() + f * s.padded_size +
                          (oy * s.stride + p / kKernelSize) * s.padded_width + p % kKernelSize;
#pragma omp simd
            for (int64_t ox = 0; ox < s.out_width; ++ox) out_row[ox] += w * in[ox * s.stride];
          }
        }
        for (int64_t ox = 0; ox < s.out_width; ++ox) {
          out_plane[oy * s.out_width + ox] = static_cast<scalar_t>(out_row[ox]);
        }
      }
    }
  });
}

// dB_k/dx of one row given its features (see row_features): writes K rows of `count` values to
// derivatives[k * count + j]. Chebyshev: T'_k(t) (1 - t^2) with T'_0 = 0, T'_1 = 1,
// T'_k = 2 T_{k-1} + 2 t T'_{k-1} - T'_{k-2}; rbf: -2 u / width * B_k with u = (x - c) / width.
template <typename T>
void row_derivatives(const T* features, int64_t stride, int64_t count, const ConvShape& s,
                     T* derivatives) {
  const T* x = features;
  if (s.basis == KanBasis::kChebyshev) {
    T* d0 = derivatives;
    for (int64_t j = 0; j < count; ++j) d0[j] = T(0);
    if (s.num_functions > 1) {
      T* d1 = derivatives + count;
      for (int64_t j = 0; j < count; ++j) d1[j] = T(1);
    }
    const T* t = s.num_functions > 1 ? features + 2 * stride : nullptr;  // T_1 = tanh(x)
    for (int64_t k = 2; k < s.num_functions; ++k) {
      T* out = derivatives + k * count;
      const T* prev = out - count;
      const T* prev2 = out - 2 * count;
      const T* cheb_prev = features + k * stride;  // T_{k-1}
#pragma omp simd
      for (int64_t j = 0; j < count; ++j) {
        out[j] = T(2) * cheb_prev[j] + T(2) * t[j] * prev[j] - prev2[j];
      }
    }
    for (int64_t k = 1; k < s.num_functions; ++k) {
      T* out = derivatives + k * count;
#pragma omp simd
      for (int64_t j = 0; j < count; ++j) out[j] *= T(1) - t[j] * t[j];
    }
  } else {
    const T inv_width = rbf_inv_width<T>(s.num_functions);
    for (int64_t k = 0; k < s.num_functions; ++k) {
      const T centre = rbf_centre<T>(k, s.num_functions);
      const T* bump = features + (1 + k) * stride;
      T* out = derivatives + k * count;
#pragma omp simd
      for (int64_t j = 0; j < count; ++j) {
        out[j] = T(-2) * (x[j] - centre) * inv_width * inv_width * bump[j];
      }
    }
  }
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& x,
                     const at::Tensor& base_weight, const at::Tensor& poly_weight,
                     const ConvShape& s, at::Tensor& grad_x, at::Tensor& grad_base_weight,
                     at::Tensor& grad_poly_weight) {
  using T = at::opmath_type<scalar_t>;
  const std::vector<T> kernel = full_kernel<T>(base_weight, poly_weight);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
  scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
  const int64_t plane_size = s.height * s.width;
  const int64_t out_plane_size = s.out_height * s.out_width;
  const int64_t kernel_size = kNumTaps * s.num_features;

  // Fixed chunks of planes (they depend on the shape only): each chunk writes its own partial
  // weight gradients, added afterwards in chunk order, so the result is deterministic.
  const int64_t planes_per_chunk =
      std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, plane_size));
  const int64_t num_chunks = (s.planes + planes_per_chunk - 1) / planes_per_chunk;
  std::vector<T> partial(num_chunks * kernel_size, T(0));

  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    std::vector<T> features(s.num_features * s.padded_size);
    // grad_features[f] = dL/d(feature f) at every padded pixel (a transposed convolution).
    std::vector<T> grad_features(s.num_features * s.padded_size);
    std::vector<T> scratch(std::max(s.width, s.num_features + 1));
    std::vector<T> derivatives(s.num_functions * s.width);
    std::vector<T> grad_out_row(s.out_width);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      T* grad_kernel = partial.data() + chunk * kernel_size;
      const int64_t plane_end = std::min(s.planes, (chunk + 1) * planes_per_chunk);
      for (int64_t plane = chunk * planes_per_chunk; plane < plane_end; ++plane) {
        const scalar_t* x_plane = x_data + plane * plane_size;
        plane_features(x_plane, s, features.data(), scratch.data());
        std::fill(grad_features.begin(), grad_features.end(), T(0));
        const scalar_t* grad_out_plane = grad_out_data + plane * out_plane_size;
        for (int64_t oy = 0; oy < s.out_height; ++oy) {
          for (int64_t ox = 0; ox < s.out_width; ++ox) {
            grad_out_row[ox] = static_cast<T>(grad_out_plane[oy * s.out_width + ox]);
          }
          for (int64_t f = 0; f < s.num_features; ++f) {
            for (int64_t p = 0; p < kNumTaps; ++p) {
              const T w = kernel[p * s.num_features + f];
              const int64_t offset = f * s.padded_size +
                                     (oy * s.stride + p / kKernelSize) * s.padded_width +
                                     p % kKernelSize;
              const T* in = features.data() + offset;
              T* grad_in = grad_features.data() + offset;
              T grad_w = 0;
#pragma omp simd reduction(+ : grad_w)
              for (int64_t ox = 0; ox < s.out_width; ++ox) {
                grad_w += grad_out_row[ox] * in[ox * s.stride];
                grad_in[ox * s.stride] += w * grad_out_row[ox];
              }
              grad_kernel[p * s.num_features + f] += grad_w;
            }
          }
        }
        // dL/dx = dL/d(feature 0) + sum_k dB_k/dx * dL/d(feature 1 + k), at interior pixels.
        scalar_t* grad_x_plane = grad_x_data + plane * plane_size;
        for (int64_t y = 0; y < s.height; ++y) {
          const int64_t row = (y + kPadding) * s.padded_width + kPadding;
          row_derivatives(features.data() + row, s.padded_size, s.width, s, derivatives.data());
          T* grad_row = scratch.data();
          const T* grad_x_feature = grad_features.data() + row;
          for (int64_t j = 0; j < s.width; ++j) grad_row[j] = grad_x_feature[j];
          for (int64_t k = 0; k < s.num_functions; ++k) {
            const T* grad_basis = grad_features.data() + (1 + k) * s.padded_size + row;
            const T* d = derivatives.data() + k * s.width;
#pragma omp simd
            for (int64_t j = 0; j < s.width; ++j) grad_row[j] += d[j] * grad_basis[j];
          }
          for (int64_t j = 0; j < s.width; ++j) {
            grad_x_plane[y * s.width + j] = static_cast<scalar_t>(grad_row[j]);
          }
        }
      }
    }
  });

  std::vector<double> totals(kernel_size, 0.0);
  for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
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
