// CPU kernels of the group-rational activation (docs/ops.md).
//
// x (..., C) is seen as `rows * g` contiguous segments of C / g channels that share one
// group's coefficients. Segments are processed in parallel; the inner loop over a segment's
// channels is a vectorisable loop in the compute type (fp32, fp64 for fp64 x).
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

// One group's coefficients in the compute type: a0..a5 and |b1|..|b4|.
template <typename T>
struct Coefficients {
  T a[kNumNumerator];
  T abs_b[kNumDenominator];

  Coefficients(const T* numerator, const T* denominator) {
    for (int64_t k = 0; k < kNumNumerator; ++k) a[k] = numerator[k];
    for (int64_t k = 0; k < kNumDenominator; ++k) abs_b[k] = std::abs(denominator[k]);
  }
};

struct Shape {
  int64_t segments;          // rows * groups
  int64_t groups;            // g
  int64_t segment_size;      // C / g
  bool shared_numerator;     // numerator is (1, 6)
};

Shape shape_of(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator) {
  const int64_t groups = denominator.size(0);
  const int64_t segment_size = x.size(-1) / groups;
  const int64_t segments = segment_size == 0 ? 0 : x.numel() / segment_size;
  return {segments, groups, segment_size, numerator.size(0) == 1};
}

// Segments per parallel task / reduction chunk, so that each holds about kChunkElements.
int64_t segments_per_chunk(const Shape& shape) {
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, shape.segment_size));
}

template <typename T>
Coefficients<T> group_coefficients(const T* numerator, const T* denominator, const Shape& shape,
                                   int64_t group) {
  return Coefficients<T>(numerator + (shape.shared_numerator ? 0 : group * kNumNumerator),
                         denominator + group * kNumDenominator);
}

// F(x) of segments [begin, end).
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void forward_segments(const scalar_t* x, const T* numerator,
                                              const T* denominator, const Shape& shape,
                                              int64_t begin, int64_t end, scalar_t* out) {
  for (int64_t segment = begin; segment < end; ++segment) {
    const Coefficients<T> c =
        group_coefficients(numerator, denominator, shape, segment % shape.groups);
    const scalar_t* xs = x + segment * shape.segment_size;
    scalar_t* ys = out + segment * shape.segment_size;
#pragma omp simd
    for (int64_t j = 0; j < shape.segment_size; ++j) {
      const T v = static_cast<T>(xs[j]);
      const T abs_v = std::abs(v);
      const T p = c.a[0] + v * (c.a[1] + v * (c.a[2] + v * (c.a[3] + v * (c.a[4] + v * c.a[5]))));
      const T q =
          T(1) + abs_v * (c.abs_b[0] +
                          abs_v * (c.abs_b[1] + abs_v * (c.abs_b[2] + abs_v * c.abs_b[3])));
      ys[j] = static_cast<scalar_t>(p / q);
    }
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& numerator,
                    const at::Tensor& denominator, at::Tensor& out) {
  using T = at::opmath_type<scalar_t>;
  const Shape shape = shape_of(x, numerator, denominator);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  const T* numerator_data = numerator.const_data_ptr<T>();
  const T* denominator_data = denominator.const_data_ptr<T>();
  at::parallel_for(0, shape.segments, segments_per_chunk(shape), [&](int64_t begin, int64_t end) {
    forward_segments(x_data, numerator_data, denominator_data, shape, begin, end, out_data);
  });
}

// Per-group sums of dL/da_k (k = 0..5) and of -dL * P / Q^2 * |x|^k (k = 1..4); the latter times
// s(b_k) is dL/db_k.
constexpr int64_t kNumSums = kNumNumerator + kNumDenominator;

// grad_x of segments [begin, end); adds their per-group sums to sums[group][kNumSums].
template <typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void backward_segments(const scalar_t* x, const scalar_t* grad_out,
                                               const T* numerator, const T* denominator,
                                               const Shape& shape, int64_t begin, int64_t end,
                                               scalar_t* grad_x, T* sums) {
  for (int64_t segment = begin; segment < end; ++segment) {
    const int64_t group = segment % shape.groups;
    const Coefficients<T> c = group_coefficients(numerator, denominator, shape, group);
    const int64_t offset = segment * shape.segment_size;
    const scalar_t* xs = x + offset;
    const scalar_t* gs = grad_out + offset;
    scalar_t* gxs = grad_x + offset;
    T da0 = 0, da1 = 0, da2 = 0, da3 = 0, da4 = 0, da5 = 0;
    T db1 = 0, db2 = 0, db3 = 0, db4 = 0;
#pragma omp simd reduction(+ : da0, da1, da2, da3, da4, da5, db1, db2, db3, db4)
    for (int64_t j = 0; j < shape.segment_size; ++j) {
      const T v = static_cast<T>(xs[j]);
      const T g = static_cast<T>(gs[j]);
      const T sign = v >= T(0) ? T(1) : T(-1);  // s(0) = +1
      const T abs_v = v * sign;
      const T v2 = v * v, v3 = v2 * v, v4 = v2 * v2, v5 = v4 * v;
      const T abs_v3 = abs_v * v2;
      const T p = c.a[0] + c.a[1] * v + c.a[2] * v2 + c.a[3] * v3 + c.a[4] * v4 + c.a[5] * v5;
      const T dp = c.a[1] + T(2) * c.a[2] * v + T(3) * c.a[3] * v2 + T(4) * c.a[4] * v3 +
                   T(5) * c.a[5] * v4;
      const T q =
          T(1) + c.abs_b[0] * abs_v + c.abs_b[1] * v2 + c.abs_b[2] * abs_v3 + c.abs_b[3] * v4;
      const T dq = sign * (c.abs_b[0] + T(2) * c.abs_b[1] * abs_v + T(3) * c.abs_b[2] * v2 +
                           T(4) * c.abs_b[3] * abs_v3);
      const T inv_q = T(1) / q;
      const T f = p * inv_q;
      const T g_over_q = g * inv_q;
      gxs[j] = static_cast<scalar_t>(g_over_q * (dp - dq * f));
      da0 += g_over_q;
      da1 += g_over_q * v;
      da2 += g_over_q * v2;
      da3 += g_over_q * v3;
      da4 += g_over_q * v4;
      da5 += g_over_q * v5;
      const T g_denominator = -g_over_q * f;
      db1 += g_denominator * abs_v;
      db2 += g_denominator * v2;
      db3 += g_denominator * abs_v3;
      db4 += g_denominator * v4;
    }
    T* group_sums = sums + group * kNumSums;
    const T segment_sums[kNumSums] = {da0, da1, da2, da3, da4, da5, db1, db2, db3, db4};
    for (int64_t k = 0; k < kNumSums; ++k) group_sums[k] += segment_sums[k];
  }
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& numerator,
                     const at::Tensor& denominator, at::Tensor& grad_x, at::Tensor& grad_numerator,
                     at::Tensor& grad_denominator) {
  using T = at::opmath_type<scalar_t>;
  const Shape shape = shape_of(x, numerator, denominator);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
  scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
  const T* numerator_data = numerator.const_data_ptr<T>();
  const T* denominator_data = denominator.const_data_ptr<T>();

  // Fixed chunks (they depend on the shape only, not on the thread count): each chunk writes its
  // own partial sums, which are then added in chunk order, so the result is deterministic.
  const int64_t chunk_segments = segments_per_chunk(shape);
  const int64_t num_chunks = (shape.segments + chunk_segments - 1) / chunk_segments;
  std::vector<T> partial(num_chunks * shape.groups * kNumSums, T(0));

  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      backward_segments(x_data, grad_out_data, numerator_data, denominator_data, shape,
                        chunk * chunk_segments,
                        std::min(shape.segments, (chunk + 1) * chunk_segments), grad_x_data,
                        partial.data() + chunk * shape.groups * kNumSums);
    }
  });

  // Ordered combination in double, then the chain rule through |b| (s(0) = +1).
  std::vector<double> totals(shape.groups * kNumSums, 0.0);
  for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
    const T* sums = partial.data() + chunk * shape.groups * kNumSums;
    for (int64_t i = 0; i < shape.groups * kNumSums; ++i) totals[i] += sums[i];
  }
  T* grad_numerator_data = grad_numerator.mutable_data_ptr<T>();
  T* grad_denominator_data = grad_denominator.mutable_data_ptr<T>();
  for (int64_t k = 0; k < grad_numerator.numel(); ++k) grad_numerator_data[k] = T(0);
  for (int64_t group = 0; group < shape.groups; ++group) {
    const double* group_totals = totals.data() + group * kNumSums;
    T* gn = grad_numerator_data + (shape.shared_numerator ? 0 : group * kNumNumerator);
    for (int64_t k = 0; k < kNumNumerator; ++k) gn[k] += static_cast<T>(group_totals[k]);
    for (int64_t k = 0; k < kNumDenominator; ++k) {
      const T b = denominator_data[group * kNumDenominator + k];
      const double sign = b >= T(0) ? 1.0 : -1.0;
      grad_denominator_data[group * kNumDenominator + k] =
          static_cast<T>(sign * group_totals[kNumNumerator + k]);
    }
  }
}

at::Tensor group_rational_forward_cpu(const at::Tensor& x, const at::Tensor& numerator,
                                      const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "group_rational_forward_cpu", [&] {
                                    forward_kernel<scalar_t>(x, numerator, denominator, out);
                                  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_rational_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  check_grad_out("group_rational_backward", grad_out, x, x.sizes());
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_numerator = at::empty_like(numerator);
  at::Tensor grad_denominator = at::empty_like(denominator);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "group_rational_backward_cpu", [&] {
        backward_kernel<scalar_t>(grad_out, x, numerator, denominator, grad_x, grad_numerator,
                                  grad_denominator);
      });
  return {grad_x, grad_numerator, grad_denominator};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CPU, m) {
  m.impl("group_rational_forward", &group_rational_forward_cpu);
  m.impl("group_rational_backward", &group_rational_backward_cpu);
}

}  // namespace mmrkan
