// Schemas of mmrkan's KAN ops and the argument checks shared by their device implementations.
#include "kan_ops.h"

#include <torch/library.h>

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
  TORCH_CHECK(denominator.dim() == 2 && denominator.size(1) == kNumDenominator,
              "group_rational: denominator must have shape (g, 4), got ", denominator.sizes());
  const int64_t groups = denominator.size(0);
  TORCH_CHECK(groups >= 1, "group_rational: denominator must have at least one group");
  TORCH_CHECK(numerator.dim() == 2 && numerator.size(1) == kNumNumerator &&
                  (numerator.size(0) == 1 || numerator.size(0) == groups),
              "group_rational: numerator must have shape (1, 6) or (g, 6) with g = ", groups,
              ", got ", numerator.sizes());
  const int64_t channels = x.size(-1);
  TORCH_CHECK(channels % groups == 0, "group_rational: channels C = ", channels,
              " must be divisible by the number of groups g = ", groups);
  check_weight_dtype_and_device("group_rational", x, numerator, "numerator");
  check_weight_dtype_and_device("group_rational", x, denominator, "denominator");
  TORCH_CHECK(numerator.is_contiguous() && denominator.is_contiguous(),
              "group_rational: coefficients must be contiguous");
}

void check_kan_conv2d_args(const at::Tensor& x, const at::Tensor& base_weight,
                           const at::Tensor& poly_weight, int64_t stride, int64_t basis) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) >= 1 && x.size(3) >= 1,
              "kan_conv2d: x must have shape (N, C, H, W) with H, W >= 1, got ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), "kan_conv2d: x must be contiguous");
  TORCH_CHECK(base_weight.dim() == 1 && base_weight.size(0) == kNumTaps,
              "kan_conv2d: base_weight must have shape (9,), got ", base_weight.sizes());
  TORCH_CHECK(poly_weight.dim() == 2 && poly_weight.size(0) == kNumTaps && poly_weight.size(1) >= 1,
              "kan_conv2d: poly_weight must have shape (9, K) with K >= 1, got ",
              poly_weight.sizes());
  TORCH_CHECK(stride == 1 || stride == 2, "kan_conv2d: stride=", stride,
              " is not supported; allowed: 1, 2");
  TORCH_CHECK(basis == static_cast<int64_t>(KanBasis::kChebyshev) ||
                  basis == static_cast<int64_t>(KanBasis::kRbf),
              "kan_conv2d: basis=", basis, " is not supported; allowed: 0 (chebyshev), 1 (rbf)");
  TORCH_CHECK(basis != static_cast<int64_t>(KanBasis::kRbf) || poly_weight.size(1) >= 2,
              "kan_conv2d: the rbf basis needs at least 2 bumps, got ", poly_weight.size(1));
  check_weight_dtype_and_device("kan_conv2d", x, base_weight, "base_weight");
  check_weight_dtype_and_device("kan_conv2d", x, poly_weight, "poly_weight");
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
  m.def(
      "kan_conv2d_forward(Tensor x, Tensor base_weight, Tensor poly_weight, int stride, int basis)"
      " -> Tensor");
  m.def(
      "kan_conv2d_backward(Tensor grad_out, Tensor x, Tensor base_weight, Tensor poly_weight,"
      " int stride, int basis) -> (Tensor, Tensor, Tensor)");
}

}  // namespace mmrkan
