// Schemas of mmrkan's KAN ops and the argument checks shared by their device implementations.
#include "kan_ops.h"

#include <torch/library.h>

#include <cmath>

namespace mmrkan {

namespace {

// Coefficients/weights come in the compute dtype: fp64 for fp64 x, fp32 otherwise.
void check_weight_dtype_and_device(const char* op, const at::Tensor& x, const at::Tensor& weight,
                                   const char* name) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": x must be a floating-point tensor, got ",
              x.scalar_type());
  const auto expected = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(weight.scalar_type() == expected, op, ": ", name, " must be ", expected,
              " for x of dtype ", x.scalar_type(), ", got ", weight.scalar_type());
  TORCH_CHECK(weight.device() == x.device(), op, ": ", name, " is on ", weight.device(),
              " but x is on ", x.device(), "; all tensors must be on the same device");
}

}  // namespace

void check_group_rational_args(const at::Tensor& x, const at::Tensor& numerator,
                               const at::Tensor& denominator) {
  TORCH_CHECK(x.dim() >= 1, "group_rational: x must have at least one dimension (..., C)");
  TORCH_CHECK(x.is_contiguous(), "group_rational: x must be contiguous");
  TORCH_CHECK(denominator.dim() == 2 && denominator.size(0) >= 1,
              "group_rational: denominator must have shape (g, n), got ", denominator.sizes());
  const int64_t groups = denominator.size(0);
  TORCH_CHECK(numerator.dim() == 2 && (numerator.size(0) == 1 || numerator.size(0) == groups),
              "group_rational: numerator must have shape (1, m + 1) or (g, m + 1) with g = ",
              groups, ", got ", numerator.sizes());
  const int64_t m = numerator.size(1) - 1;
  const int64_t n = denominator.size(1);
  bool supported = false;
  for (const auto& order : kRationalOrders) supported |= order[0] == m && order[1] == n;
  TORCH_CHECK(supported, "group_rational: order (m, n) = (", m, ", ", n,
              ") (numerator ", numerator.sizes(), ", denominator ", denominator.sizes(),
              ") is not supported; allowed: (3, 2), (5, 4), (7, 6)");
  const int64_t channels = x.size(-1);
  TORCH_CHECK(channels % groups == 0, "group_rational: channels C = ", channels,
              " must be divisible by the number of groups g = ", groups);
  check_weight_dtype_and_device("group_rational", x, numerator, "numerator");
  check_weight_dtype_and_device("group_rational", x, denominator, "denominator");
  TORCH_CHECK(numerator.is_contiguous() && denominator.is_contiguous(),
              "group_rational: coefficients must be contiguous");
}

void check_kan_conv2d_args(const at::Tensor& x, const at::Tensor& base_weight,
                           const at::Tensor& poly_weight, const at::Tensor& norm_scale,
                           int64_t stride, int64_t basis, int64_t normalization,
                           int64_t base_activation, at::ArrayRef<double> basis_params) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) >= 1 && x.size(3) >= 1,
              "kan_conv2d: x must have shape (N, C, H, W) with H, W >= 1, got ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), "kan_conv2d: x must be contiguous");
  TORCH_CHECK(base_weight.dim() == 1 && base_weight.size(0) == kNumTaps,
              "kan_conv2d: base_weight must have shape (9,), got ", base_weight.sizes());
  TORCH_CHECK(poly_weight.dim() == 2 && poly_weight.size(0) == kNumTaps && poly_weight.size(1) >= 1,
              "kan_conv2d: poly_weight must have shape (9, K) with K >= 1, got ",
              poly_weight.sizes());
  TORCH_CHECK(norm_scale.dim() == 1 && norm_scale.size(0) == 1,
              "kan_conv2d: norm_scale must have shape (1,), got ", norm_scale.sizes());
  TORCH_CHECK(stride == 1 || stride == 2, "kan_conv2d: stride=", stride,
              " is not supported; allowed: 1, 2");
  TORCH_CHECK(basis >= 0 && basis <= static_cast<int64_t>(KanBasis::kBSpline), "kan_conv2d: basis=",
              basis, " is not supported; allowed: 0 (chebyshev), 1 (rbf), 2 (legendre), ",
              "3 (jacobi), 4 (hermite), 5 (b_spline)");
  TORCH_CHECK(normalization >= 0 &&
                  normalization <= static_cast<int64_t>(KanNormalization::kStandardization),
              "kan_conv2d: normalization=", normalization, " is not supported; allowed: 0 (none), ",
              "1 (tanh), 2 (arctan), 3 (min-max), 4 (standardization)");
  TORCH_CHECK(base_activation == static_cast<int64_t>(KanBaseActivation::kIdentity) ||
                  base_activation == static_cast<int64_t>(KanBaseActivation::kSilu),
              "kan_conv2d: base_activation=", base_activation,
              " is not supported; allowed: 0 (identity), 1 (silu)");
  for (const double value : basis_params) {
    TORCH_CHECK(std::isfinite(value), "kan_conv2d: basis_params must be finite, got ",
                basis_params);
  }
  const int64_t num_functions = poly_weight.size(1);
  switch (static_cast<KanBasis>(basis)) {
    case KanBasis::kJacobi:
      TORCH_CHECK(basis_params.size() == 2 && basis_params[0] > -1 && basis_params[1] > -1,
                  "kan_conv2d: the jacobi basis takes basis_params [alpha, beta] with alpha, ",
                  "beta > -1, got ", basis_params);
      break;
    case KanBasis::kRbf:
      TORCH_CHECK(basis_params.size() == 2 && basis_params[0] < basis_params[1],
                  "kan_conv2d: the rbf basis takes basis_params [grid_min, grid_max] with ",
                  "grid_min < grid_max, got ", basis_params);
      TORCH_CHECK(num_functions >= 2, "kan_conv2d: the rbf basis needs at least 2 bumps, got ",
                  num_functions);
      break;
    case KanBasis::kBSpline: {
      TORCH_CHECK(basis_params.size() == 3 && basis_params[0] < basis_params[1],
                  "kan_conv2d: the b_spline basis takes basis_params [grid_min, grid_max, ",
                  "spline_order] with grid_min < grid_max, got ", basis_params);
      const double order = basis_params[2];
      TORCH_CHECK(order == std::floor(order) && order >= 1 && order <= kMaxSplineOrder,
                  "kan_conv2d: spline_order=", order, " is not supported; allowed: 1 to ",
                  kMaxSplineOrder);
      TORCH_CHECK(num_functions > order, "kan_conv2d: the b_spline basis of order ", order,
                  " needs K = grid_size + spline_order >= ", order + 1, " functions, got ",
                  num_functions);
      break;
    }
    default:
      TORCH_CHECK(basis_params.empty(), "kan_conv2d: basis=", basis,
                  " takes no basis_params, got ", basis_params);
  }
  check_weight_dtype_and_device("kan_conv2d", x, base_weight, "base_weight");
  check_weight_dtype_and_device("kan_conv2d", x, poly_weight, "poly_weight");
  check_weight_dtype_and_device("kan_conv2d", x, norm_scale, "norm_scale");
  TORCH_CHECK(base_weight.is_contiguous() && poly_weight.is_contiguous(),
              "kan_conv2d: weights must be contiguous");
}

void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                    at::IntArrayRef output_sizes) {
  TORCH_CHECK(grad_out.sizes() == output_sizes, op, ": grad_out must have the output's shape ",
              output_sizes, ", got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), op, ": grad_out must have x's dtype ",
              x.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK(grad_out.device() == x.device(), op, ": grad_out is on ", grad_out.device(),
              " but x is on ", x.device());
  TORCH_CHECK(grad_out.is_contiguous(), op, ": grad_out must be contiguous");
}

TORCH_LIBRARY(mmrkan, m) {
  m.def("group_rational_forward(Tensor x, Tensor numerator, Tensor denominator) -> Tensor");
  m.def(
      "group_rational_backward(Tensor grad_out, Tensor x, Tensor numerator, Tensor denominator)"
      " -> (Tensor, Tensor, Tensor)");
  // kan_conv2d: basis, normalization, base_activation and basis_params as documented in
  // kan_ops.h; norm_scale (1,) is read by the arctan normalization only (its gradient is 0
  // otherwise). The backward returns (grad_x, grad_base_weight, grad_poly_weight,
  // grad_norm_scale).
  m.def(
      "kan_conv2d_forward(Tensor x, Tensor base_weight, Tensor poly_weight, Tensor norm_scale,"
      " int stride, int basis, int normalization, int base_activation, float[] basis_params)"
      " -> Tensor");
  m.def(
      "kan_conv2d_backward(Tensor grad_out, Tensor x, Tensor base_weight, Tensor poly_weight,"
      " Tensor norm_scale, int stride, int basis, int normalization, int base_activation,"
      " float[] basis_params) -> (Tensor, Tensor, Tensor, Tensor)");
}

}  // namespace mmrkan
