"""Plain-PyTorch references of the KAN ops (``docs/ops.md``).

Short and obviously correct, differentiable by autograd, float64-capable. The tests compare the
C++/CUDA kernels against them, and :mod:`mmrkan.ops` runs them when the compiled extension is
missing and during ONNX export. Like the kernels they compute in float32 (float64 when any input
is float64) whatever the storage dtype, and return the result in ``x``'s dtype.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .kan_conv_options import (BASIS_CODES, NORMALIZATION_EPS, PIXELWISE_NORMALIZATIONS,
                               KANConvOptions, kan_conv2d_options)

__all__ = [
    'BASIS_CODES', 'abs_with_sign_at_zero', 'group_rational_reference', 'b_spline_basis',
    'basis_functions', 'normalize_windows', 'kan_conv2d_reference'
]


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

    ``P(x) = a0 + a1 x + ... + am x^m`` with ``a = numerator`` of shape ``(1, m + 1)`` (shared)
    or ``(g, m + 1)``; ``Q(x) = 1 + |b1||x| + ... + |bn||x|^n`` with ``b = denominator`` of shape
    ``(g, n)``. Channel ``c`` is in group ``c // (C / g)``.
    """
    dtype = _compute_dtype(x, numerator, denominator)
    groups, n = denominator.shape
    m = numerator.shape[1] - 1
    channels = x.shape[-1]
    xg = x.to(dtype).reshape(*x.shape[:-1], groups, channels // groups)
    a = numerator.to(dtype)[:, :, None]  # (1 or g, m + 1, 1): broadcasts over (g, C/g)
    b = abs_with_sign_at_zero(denominator.to(dtype))[:, :, None]
    abs_x = abs_with_sign_at_zero(xg)
    p = a[:, m]
    for k in range(m - 1, -1, -1):
        p = p * xg + a[:, k]
    q = b[:, n - 1] * abs_x
    for k in range(n - 2, -1, -1):
        q = (q + b[:, k]) * abs_x
    return (p / (1 + q)).reshape(x.shape).to(x.dtype)


def b_spline_basis(x: torch.Tensor,
                   grid_size: int,
                   spline_order: int,
                   grid_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """The ``grid_size + spline_order`` B-spline basis functions of efficient-KAN, on ``x``.

    Uniform knots ``t_i = low + (i - k) h`` for ``i = 0 .. G + 2k``, ``h = (high - low) / G``
    (``G = grid_size``, ``k = spline_order``); order-0 bases ``1[t_i <= x < t_(i+1)]`` raised to
    order ``k`` by the Cox-de Boor recursion. Every basis is 0 outside ``[t_0, t_(G+2k))``.

    Returns:
        ``(*x.shape, G + k)`` in ``x``'s dtype; differentiable in ``x``.
    """
    low, high = grid_range
    h = (high - low) / grid_size
    knots = (torch.arange(-spline_order, grid_size + spline_order + 1, dtype=x.dtype,
                          device=x.device) * h + low)
    x = x.unsqueeze(-1)
    bases = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for k in range(1, spline_order + 1):
        bases = ((x - knots[:-(k + 1)]) / (knots[k:-1] - knots[:-(k + 1)]) * bases[..., :-1] +
                 (knots[k + 1:] - x) / (knots[k + 1:] - knots[1:-k]) * bases[..., 1:])
    return bases


def basis_functions(t: torch.Tensor,
                    num_functions: int,
                    basis: str = 'chebyshev',
                    basis_params: Optional[Tuple[float, ...]] = None) -> List[torch.Tensor]:
    """``B_0(t) .. B_(K-1)(t)`` of one family, on already normalised values ``t``.

    Polynomial families of degree ``K - 1`` by the authors' recurrences; ``rbf``: ``K`` Gaussian
    bumps on ``linspace(low, high, K)`` with width ``(high - low) / (K - 1)``; ``b_spline``: the
    ``K = G + k`` functions of :func:`b_spline_basis`. ``basis_params`` as in
    :class:`~mmrkan.ops.kan_conv_options.KANConvOptions` (None: the authors' defaults).
    """
    if basis_params is None:
        basis_params = kan_conv2d_options('basis_functions', basis).basis_params
    one = torch.ones_like(t)
    if basis == 'chebyshev':
        functions = [one, t]
        for _ in range(2, num_functions):
            functions.append(2 * t * functions[-1] - functions[-2])
    elif basis == 'legendre':
        functions = [one, t]
        for n in range(2, num_functions):
            functions.append(((2 * n - 1) * t * functions[-1] - (n - 1) * functions[-2]) / n)
    elif basis == 'hermite':
        functions = [one, 2 * t]
        for n in range(2, num_functions):
            functions.append(2 * t * functions[-1] - 2 * (n - 1) * functions[-2])
    elif basis == 'jacobi':
        alpha, beta = basis_params
        functions = [one, 0.5 * (alpha - beta + (alpha + beta + 2) * t)]
        for n in range(2, num_functions):
            s = 2 * n + alpha + beta
            a = (s - 1) * (s * (s - 2) * t + alpha**2 - beta**2)
            b = 2 * (n + alpha - 1) * (n + beta - 1) * s
            c = 2 * n * (n + alpha + beta) * (s - 2)
            functions.append((a * functions[-1] - b * functions[-2]) / c)
    elif basis == 'rbf':
        low, high = basis_params
        width = (high - low) / (num_functions - 1)
        centres = torch.linspace(low, high, num_functions, dtype=torch.float64).tolist()
        functions = [torch.exp(-((t - centre) / width)**2) for centre in centres]
    elif basis == 'b_spline':
        low, high, order = basis_params
        order = int(order)
        functions = list(b_spline_basis(t, num_functions - order, order, (low, high)).unbind(-1))
    else:
        raise ValueError(f'basis={basis!r} is not supported; allowed: {tuple(BASIS_CODES)}')
    return functions[:num_functions]


def normalize_windows(taps: torch.Tensor, normalization: str, norm_scale: Optional[torch.Tensor],
                      dim: int) -> torch.Tensor:
    """The authors' input normalisations, with statistics over dimension ``dim`` (the 9 taps).

    min-max: ties go to the first tap (``argmin``/``argmax``), which alone gets the gradient of
    the minimum/maximum. standardization: the standard deviation (Bessel-corrected) has gradient
    0 where it is 0 (written out, not left to ``torch.std``'s backward), the limit of the
    gradient of ``t`` as the window tends to a constant one.
    """
    if normalization == 'none':
        return taps
    if normalization == 'tanh':
        return torch.tanh(taps)
    centred = taps - taps.mean(dim, keepdim=True)
    if normalization == 'arctan':
        return (2 / math.pi) * torch.atan(centred * norm_scale.reshape(()).to(taps.dtype))
    if normalization == 'min-max':
        low = taps.gather(dim, taps.argmin(dim, keepdim=True))
        high = taps.gather(dim, taps.argmax(dim, keepdim=True))
        return 2 * (taps - low) / (high - low + NORMALIZATION_EPS) - 1
    if normalization == 'standardization':
        variance = (centred * centred).sum(dim, keepdim=True) / (taps.shape[dim] - 1)
        positive = variance > 0
        # Tensor fill values, not Python floats: torch < 2.2's ONNX exporter makes those float64.
        one, zero = torch.ones_like(variance), torch.zeros_like(variance)
        std = torch.where(positive, torch.where(positive, variance, one).sqrt(), zero)
        return centred / (std + NORMALIZATION_EPS)
    raise ValueError(f'normalization={normalization!r} is not supported')


def window_taps(padded: torch.Tensor, stride: int) -> torch.Tensor:
    """``(N, C, 9, Hout, Wout)``: the 9 taps (row-major) of every 3x3 window of a padded map."""
    out_h = (padded.shape[-2] - 3) // stride + 1
    out_w = (padded.shape[-1] - 3) // stride + 1
    return torch.stack([
        padded[..., i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
        for i in range(3) for j in range(3)
    ], dim=2)


def kan_conv2d_reference(x: torch.Tensor,
                         base_weight: torch.Tensor,
                         poly_weight: torch.Tensor,
                         stride: int = 1,
                         basis: str = 'chebyshev',
                         normalization: Optional[str] = None,
                         base_activation: str = 'identity',
                         norm_scale: Optional[torch.Tensor] = None,
                         jacobi_alpha: Optional[float] = None,
                         jacobi_beta: Optional[float] = None,
                         grid_range: Optional[Sequence[float]] = None,
                         spline_order: Optional[int] = None) -> torch.Tensor:
    """Depthwise 3x3 KAN convolution with one kernel shared by all channels (zero padding 1).

    ``y = sum_p base_weight[p] * act(x_p) + sum_p sum_k poly_weight[p, k] * B_k(t_p)`` over the
    9 taps ``p`` (row-major) of each window, ``t = normalize(x)`` (per value, or with the
    statistics of the window's 9 taps). ``x`` is zero-padded BEFORE anything else, so padded taps
    are taps of value 0. The arguments are those of :func:`mmrkan.ops.kan_conv2d`.
    """
    options = kan_conv2d_options('kan_conv2d_reference', basis, normalization, base_activation,
                                 jacobi_alpha, jacobi_beta, grid_range, spline_order)
    if options.normalization == 'arctan' and norm_scale is None:
        raise ValueError("kan_conv2d_reference: normalization='arctan' needs norm_scale")
    return kan_conv2d_reference_with_options(x, base_weight, poly_weight, norm_scale, stride,
                                             options)


def kan_conv2d_reference_with_options(x: torch.Tensor, base_weight: torch.Tensor,
                                      poly_weight: torch.Tensor,
                                      norm_scale: Optional[torch.Tensor], stride: int,
                                      options: KANConvOptions) -> torch.Tensor:
    """:func:`kan_conv2d_reference` with checked options."""
    dtype = _compute_dtype(x, base_weight, poly_weight)
    n, c, h, w = x.shape
    num_functions = poly_weight.shape[1]
    padded = F.pad(x.to(dtype), (1, 1, 1, 1))
    base_weight, poly_weight = base_weight.to(dtype), poly_weight.to(dtype)
    activated = F.silu(padded) if options.base_activation == 'silu' else padded
    if options.normalization in PIXELWISE_NORMALIZATIONS:
        # The basis once per padded pixel, then one valid 3x3 convolution of the 1 + K maps
        # [act(x), B_0, .., B_(K-1)] shared by every (n, c) plane.
        t = normalize_windows(padded, options.normalization, None, dim=-1)
        features = [activated] + basis_functions(t, num_functions, options.basis,
                                                 options.basis_params)
        features = torch.stack(features, dim=2).reshape(n * c, 1 + num_functions, h + 2, w + 2)
        kernel = torch.cat([base_weight[:, None], poly_weight], dim=1)
        out = F.conv2d(features, kernel.t().reshape(1, -1, 3, 3), stride=stride)
        return out.reshape(n, c, out.shape[-2], out.shape[-1]).to(x.dtype)
    t = normalize_windows(window_taps(padded, stride), options.normalization, norm_scale, dim=2)
    functions = torch.stack(
        basis_functions(t, num_functions, options.basis, options.basis_params), dim=-1)
    out = (torch.einsum('ncphw,p->nchw', window_taps(activated, stride), base_weight) +
           torch.einsum('ncphwk,pk->nchw', functions, poly_weight))
    return out.to(x.dtype)
