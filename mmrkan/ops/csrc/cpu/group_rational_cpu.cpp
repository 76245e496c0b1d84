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

// One group's coefficients in the compute type: a0..aM and |b1|..|bN|.
template <typename T, int M, int N>
struct Coefficients {
  T a[M + 1];
  T abs_b[N];

  Coefficients(const T* numerator, const T* denominator) {
    for (int k = 0; k <= M; ++k) a[k] = numerator[k];
    for (int k = 0; k < N; ++k) abs_b[k] = std::abs(denominator[k]);
  }
};

struct Shape {
  int64_t segments;          // rows * groups
  int64_t groups;            // g
  int64_t segment_size;      // C / g
  bool shared_numerator;     // numerator is (1, M + 1)
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

template <typename T, int M, int N>
Coefficients<T, M, N> group_coefficients(const T* numerator, const T* denominator,
                                         const Shape& shape, int64_t group) {
  return Coefficients<T, M, N>(numerator + (shape.shared_numerator ? 0 : group * (M + 1)),
                               denominator + group * N);
}

// F(x) of segments [begin, end); P and Q by Horner's scheme.
template <int M, int N, typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void forward_segments(const scalar_t* x, const T* numerator,
                                              const T* denominator, const Shape& shape,
                                              int64_t begin, int64_t end, scalar_t* out) {
  for (int64_t segment = begin; segment < end; ++segment) {
    const auto c =
        group_coefficients<T, M, N>(numerator, denominator, shape, segment % shape.groups);
    const scalar_t* xs = x + segment * shape.segment_size;
    scalar_t* ys = out + segment * shape.segment_size;
#pragma omp simd
    for (int64_t j = 0; j < shape.segment_size; ++j) {
      const T v = static_cast<T>(xs[j]);
      const T abs_v = std::abs(v);
      T p = c.a[M];
      for (int k = M - 1; k >= 0; --k) p = p * v + c.a[k];
      T q = c.abs_b[N - 1];
      for (int k = N - 2; k >= 0; --k) q = q * abs_v + c.abs_b[k];
      ys[j] = static_cast<scalar_t>(p / (T(1) + q * abs_v));
    }
  }
}

template <int M, int N, typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& numerator,
                    const at::Tensor& denominator, at::Tensor& out) {
  using T = at::opmath_type<scalar_t>;
  const Shape shape = shape_of(x, numerator, denominator);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  const T* numerator_data = numerator.const_data_ptr<T>();
  const T* denominator_data = denominator.const_data_ptr<T>();
  at::parallel_for(0, shape.segments, segments_per_chunk(shape), [&](int64_t begin, int64_t end) {
    forward_segments<M, N>(x_data, numerator_data, denominator_data, shape, begin, end,
                           out_data);
  });
}

// Per-group sums of dL/da_k (k = 0..M) and of -dL * P / Q^2 * |x|^k (k = 1..N); the latter
// times s(b_k) is dL/db_k.
template <int M, int N>
constexpr int kNumSums = M + 1 + N;

// grad_x of segments [begin, end); adds their per-group sums to sums[group][kNumSums].
// The sums are named scalars, up to the highest order (7, 6): an `omp simd` reduction of scalars
// vectorises into registers, one of an array does not (3x slower). Terms beyond (M, N) are
// removed at compile time.
template <int M, int N, typename scalar_t, typename T>
MMRKAN_CPU_MULTIVERSION void backward_segments(const scalar_t* x, const scalar_t* grad_out,
                                               const T* numerator, const T* denominator,
                                               const Shape& shape, int64_t begin, int64_t end,
                                               scalar_t* grad_x, T* sums) {
  static_assert(M <= 7 && N <= 6, "backward_segments has sums up to the order (7, 6)");
  constexpr int kSums = kNumSums<M, N>;
  for (int64_t segment = begin; segment < end; ++segment) {
    const int64_t group = segment % shape.groups;
    const auto c = group_coefficients<T, M, N>(numerator, denominator, shape, group);
    const int64_t offset = segment * shape.segment_size;
    const scalar_t* xs = x + offset;
    const scalar_t* gs = grad_out + offset;
    scalar_t* gxs = grad_x + offset;
    // da0..da7: sums of g / Q x^k; db1..db6: sums of -g P / Q^2 |x|^k.
    T da0 = 0, da1 = 0, da2 = 0, da3 = 0, da4 = 0, da5 = 0, da6 = 0, da7 = 0;
    T db1 = 0, db2 = 0, db3 = 0, db4 = 0, db5 = 0, db6 = 0;
#pragma omp simd reduction(+ : da0, da1, da2, da3, da4, da5, da6, da7, db1, db2, db3, db4, \
                               db5, db6)
    for (int64_t j = 0; j < shape.segment_size; ++j) {
      const T v = static_cast<T>(xs[j]);
      const T g = static_cast<T>(gs[j]);
      const T sign = v >= T(0) ? T(1) : T(-1);  // s(0) = +1
      const T abs_v = v * sign;
      // P, P' and Q - 1 = |x| q, Q' = s(x) dq by Horner's scheme.
      T p = c.a[M], dp = T(0);
#pragma GCC unroll 8
      for (int k = M - 1; k >= 0; --k) {
        dp = dp * v + p;
        p = p * v + c.a[k];
      }
      T q = c.abs_b[N - 1], dq = T(0);
#pragma GCC unroll 8
      for (int k = N - 2; k >= 0; --k) {
        dq = dq * abs_v + q;
        q = q * abs_v + c.abs_b[k];
      }
      dq = dq * abs_v + q;
      const T inv_q = T(1) / (T(1) + q * abs_v);
      const T f = p * inv_q;
      const T g_over_q = g * inv_q;
      gxs[j] = static_cast<scalar_t>(g_over_q * (dp - sign * dq * f));
      const T v2 = v * v, v3 = v2 * v, v4 = v2 * v2;
      da0 += g_over_q;
      da1 += g_over_q * v;
      da2 += g_over_q * v2;
      da3 += g_over_q * v3;
      if (M >= 4) da4 += g_over_q * v4;
      if (M >= 5) da5 += g_over_q * v4 * v;
      if (M >= 6) da6 += g_over_q * v4 * v2;
      if (M >= 7) da7 += g_over_q * v4 * v3;
      const T g_denominator = -g_over_q * f;
      const T abs_v3 = abs_v * v2;
      db1 += g_denominator * abs_v;
      db2 += g_denominator * v2;
      if (N >= 3) db3 += g_denominator * abs_v3;
      if (N >= 4) db4 += g_denominator * v4;
      if (N >= 5) db5 += g_denominator * v4 * abs_v;
      if (N >= 6) db6 += g_denominator * abs_v3 * abs_v3;
    }
    const T segment_sums[] = {da0, da1, da2, da3, da4, da5, da6, da7,
                              db1, db2, db3, db4, db5, db6};
    T* group_sums = sums + group * kSums;
    for (int k = 0; k <= M; ++k) group_sums[k] += segment_sums[k];
    for (int k = 0; k < N; ++k) group_sums[M + 1 + k] += segment_sums[8 + k];
  }
}

template <int M, int N, typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& numerator,
                     const at::Tensor& denominator, at::Tensor& grad_x, at::Tensor& grad_numerator,
                     at::Tensor& grad_denominator) {
  using T = at::opmath_type<scalar_t>;
  constexpr int kSums = kNumSums<M, N>;
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
  std::vector<T> partial(num_chunks * shape.groups * kSums, T(0));

  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      backward_segments<M, N>(x_data, grad_out_data, numerator_data, denominator_data, shape,
                              chunk * chunk_segments,
                              std::min(shape.segments, (chunk + 1) * chunk_segments),
                              grad_x_data, partial.data() + chunk * shape.groups * kSums);
    }
  });

  // Ordered combination in double, then the chain rule through |b| (s(0) = +1).
  std::vector<double> totals(shape.groups * kSums, 0.0);
  for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
    const T* sums = partial.data() + chunk * shape.groups * kSums;
    for (int64_t i = 0; i < shape.groups * kSums; ++i) totals[i] += sums[i];
  }
  T* grad_numerator_data = grad_numerator.mutable_data_ptr<T>();
  T* grad_denominator_data = grad_denominator.mutable_data_ptr<T>();
  for (int64_t k = 0; k < grad_numerator.numel(); ++k) grad_numerator_data[k] = T(0);
  for (int64_t group = 0; group < shape.groups; ++group) {
    const double* group_totals = totals.data() + group * kSums;
    T* gn = grad_numerator_data + (shape.shared_numerator ? 0 : group * (M + 1));
    for (int k = 0; k <= M; ++k) gn[k] += static_cast<T>(group_totals[k]);
    for (int k = 0; k < N; ++k) {
      const T b = denominator_data[group * N + k];
      const double sign = b >= T(0) ? 1.0 : -1.0;
      grad_denominator_data[group * N + k] = static_cast<T>(sign * group_totals[M + 1 + k]);
    }
  }
}

at::Tensor group_rational_forward_cpu(const at::Tensor& x, const at::Tensor& numerator,
                                      const at::Tensor& denominator) {
  check_group_rational_args(x, numerator, denominator);
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "group_rational_forward_cpu", [&] {
        // The order (3, 2), (5, 4) or (7, 6) was checked: numerator (., m + 1), m = 3, 5, 7.
        switch (numerator.size(1) - 1) {
          case 3: forward_kernel<3, 2, scalar_t>(x, numerator, denominator, out); break;
          case 5: forward_kernel<5, 4, scalar_t>(x, numerator, denominator, out); break;
          default: forward_kernel<7, 6, scalar_t>(x, numerator, denominator, out);
        }
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
        switch (numerator.size(1) - 1) {
          case 3:
            backward_kernel<3, 2, scalar_t>(grad_out, x, numerator, denominator, grad_x,
                                            grad_numerator, grad_denominator);
            break;
          case 5:
            backward_kernel<5, 4, scalar_t>(grad_out, x, numerator, denominator, grad_x,
                                            grad_numerator, grad_denominator);
            break;
          default:
            backward_kernel<7, 6, scalar_t>(grad_out, x, numerator, denominator, grad_x,
                                            grad_numerator, grad_denominator);
        }
      });
  return {grad_x, grad_numerator, grad_denominator};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmrkan, CPU, m) {
  m.impl("group_rational_forward", &group_rational_forward_cpu);
  m.impl("group_rational_backward", &group_rational_backward_cpu);
}

}  // namespace mmrkan
