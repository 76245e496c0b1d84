"""Plain-PyTorch references of the KAN ops (``docs/ops.md``).

Short and obviously correct, differentiable by autograd, float64-capable. The tests compare the
C++/CUDA kernels against them, and :mod:`mmrkan.ops` falls back to them when the compiled
extension is missing. Like the kernels they compute in float32 (float64 when any input is float64)
whatever the storage dtype, and return the result in ``x``'s dtype.
"""
from typing import List

import torch
import torch.nn.functional as F

BASIS_CODES = {'chebyshev': 0, 'rbf': 1}


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def abs_with_sign_at_zero(v: torch.Tensor) -> torch.Tensor:
    """``|v|`` whose gradient is ``s(v)`` with ``s(0) = +1`` (``torch.abs`` gives 0 at 0).

    With ``torch.abs`` an identity-initialised denominator (b = 0) would never receive a gradient.
    """
    return v * torch.where(v >= 0, 1.0, -1.0)


def group_rational_reference(x: torch.Tensor, numerator: torch.Tensor,
                             denominator: torch.Tensor) -> torch.Tensor:
    """``F(x) = P(x) / Q(x)`` per channel group, on the last dimension of ``x``.

    ``P(x) = a0 + a1 x + ... + a5 x^5`` with ``a = numerator`` of shape ``(1, 6)`` (shared) or
    ``(g, 6)``; ``Q(x) = 1 + |b1||x| + |b2||x|^2 + |b3||x|^3 + |b4||x|^4`` with
    ``b = denominator`` of shape ``(g, 4)``. Channel ``c`` is in group ``c // (C / g)``.
    """
    dtype = _compute_dtype(x, numerator, denominator)
    groups = denominator.shape[0]
    channels = x.shape[-1]
    xg = x.to(dtype).reshape(*x.shape[:-1], groups, channels // groups)
    a = numerator.to(dtype)[:, :, None]  # (1 or g, 6, 1): broadcasts over (g, C/g)
    b = abs_with_sign_at_zero(denominator.to(dtype))[:, :, None]
    abs_x = abs_with_sign_at_zero(xg)
    p = a[:, 5]
    for k in range(4, -1, -1):
        p = p * xg + a[:, k]
    q = b[:, 3] * abs_x
    for k in range(2, -1, -1):
        q = (q + b[:, k]) * abs_x
    return (p / (1 + q)).reshape(x.shape).to(x.dtype)


def kan_basis_reference(x: torch.Tensor, num_functions: int, basis: str) -> List[torch.Tensor]:
    """The basis functions the KAN convolution applies to every (already padded) input value.

    ``chebyshev``: ``T_0 .. T_{K-1}`` of ``tanh(x)``; ``rbf``: ``K`` Gaussian bumps
    ``exp(-((x - c) / w)^2)`` with centres ``linspace(-1, 1, K)`` and width ``2 / (K - 1)``.
    """
    if basis == 'chebyshev':
        t = torch.tanh(x)
        functions = [torch.ones_like(x), t]
        while len(functions) < num_functions:
            functions.append(2 * t * functions[-1] - functions[-2])
        return functions[:num_functions]
    if basis == 'rbf':
        width = 2.0 / (num_functions - 1)
        centres = torch.linspace(-1.0, 1.0, num_functions, dtype=torch.float64).tolist()
        return [torch.exp(-((x - c) / width)**2) for c in centres]
    raise ValueError(f'basis={basis!r} is not supported; allowed: {tuple(BASIS_CODES)}')


def kan_conv2d_reference(x: torch.Tensor,
                         base_weight: torch.Tensor,
                         poly_weight: torch.Tensor,
                         stride: int = 1,
                         basis: str = 'chebyshev') -> torch.Tensor:
    """Depthwise 3x3 KAN convolution with one kernel shared by all channels (zero padding 1).

    ``y = sum_p base_weight[p] * x_p + sum_p sum_k poly_weight[p, k] * B_k(x_p)`` over the 9 taps
    ``p`` (row-major) of each window. ``x`` is zero-padded BEFORE the basis is evaluated, so
    padded taps contribute ``B_k(0)`` (``T_k(0) = 1, 0, -1, 0, ...`` for Chebyshev).
    """
    dtype = _compute_dtype(x, base_weight, poly_weight)
    n, c, h, w = x.shape
    padded = F.pad(x.to(dtype), (1, 1, 1, 1))
    features = [padded] + kan_basis_reference(padded, poly_weight.shape[1], basis)
    # (N*C, 1+K, H+2, W+2) convolved with one (1, 1+K, 3, 3) kernel: the sum over features.
    features = torch.stack(features, dim=2).reshape(n * c, len(features), h + 2, w + 2)
    kernel = torch.cat([base_weight.to(dtype)[:, None], poly_weight.to(dtype)], dim=1)
    kernel = kernel.t().reshape(1, -1, 3, 3)
    out = F.conv2d(features, kernel, stride=stride)
    return out.reshape(n, c, out.shape[-2], out.shape[-1]).to(x.dtype)
