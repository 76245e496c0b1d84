"""Chebyshev (or RBF) KAN convolution of RKAN; the maths: ``docs/ops.md``, "KAN convolution"."""
import math

import torch
from torch import nn

from mmrkan.registry import register_model
from .export import is_exporting
from .library import check_tensors, compute_dtype, has_kernel
from .reference import BASIS_CODES, kan_conv2d_reference


def kan_conv2d(x: torch.Tensor,
               base_weight: torch.Tensor,
               poly_weight: torch.Tensor,
               stride: int = 1,
               basis: str = 'chebyshev') -> torch.Tensor:
    """Depthwise 3x3 KAN convolution with one kernel shared by all channels, zero padding 1.

    ``y = sum_p base_weight[p] * x_p + sum_p sum_k poly_weight[p, k] * B_k(x_p)`` over the 9
    taps ``p`` of each window (row-major). ``x`` is padded before the basis is evaluated, so
    padded taps contribute ``B_k(0)``.

    Args:
        x: ``(N, C, H, W)``; float64/32/16 or bfloat16.
        base_weight: ``(9,)``.
        poly_weight: ``(9, K)``: for ``chebyshev`` ``K = D + 1`` (``T_0 .. T_D`` of
            ``tanh(x)``); for ``rbf`` ``K >= 2`` Gaussian bumps centred on
            ``linspace(-1, 1, K)`` with width ``2 / (K - 1)`` (no tanh).
        stride: 1 or 2; the output is ``floor((H - 1) / stride) + 1`` high (same for W).
        basis: ``chebyshev`` or ``rbf``.

    Returns:
        ``(N, C, Hout, Wout)`` in the dtype of ``x``, computed in fp32 (fp64 for fp64 ``x``).
    """
    check_tensors('kan_conv2d', x=x, base_weight=base_weight, poly_weight=poly_weight)
    if x.dim() != 4 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError('kan_conv2d: x must have shape (N, C, H, W) with H, W >= 1, got '
                         f'{tuple(x.shape)}')
    if base_weight.shape != (9, ):
        raise ValueError('kan_conv2d: base_weight must have shape (9,) (one weight per tap of the '
                         f'3x3 window), got {tuple(base_weight.shape)}')
    if basis not in BASIS_CODES:
        raise ValueError(f'kan_conv2d: basis={basis!r} is not supported; allowed: '
                         f'{tuple(BASIS_CODES)}')
    min_functions = 2 if basis == 'rbf' else 1
    if poly_weight.dim() != 2 or poly_weight.shape[0] != 9 or poly_weight.shape[1] < min_functions:
        raise ValueError(f'kan_conv2d: poly_weight must have shape (9, K) with K >= {min_functions}'
                         f' for basis={basis!r}, got {tuple(poly_weight.shape)}')
    if stride not in (1, 2):
        raise ValueError(f'kan_conv2d: stride={stride!r} is not supported; allowed: 1, 2')
    dtype = compute_dtype(x)
    base_weight = base_weight.to(dtype).contiguous()
    poly_weight = poly_weight.to(dtype).contiguous()
    if has_kernel(x.device) and not is_exporting():
        return torch.ops.mmrkan.kan_conv2d_forward(x.contiguous(), base_weight, poly_weight,
                                                   stride, BASIS_CODES[basis])
    return kan_conv2d_reference(x, base_weight, poly_weight, stride, basis)


@register_model()
class KANConv2d(nn.Module):
    """RKAN's KAN convolution: a 3x3 depthwise kernel shared by all channels.

    Parameters as in the authors' layer: ``base_weight (9,)``, ``poly_weight (9, K)`` and a per-tap
    ``scaler (9,)``; the effective basis weight is ``poly_weight * scaler[:, None]``. The ``rbf``
    basis adds a scalar ``base_bias`` (the paper's base linear with bias; scalar because the
    kernel is shared by all channels).

    Args:
        degree: Chebyshev degree ``D`` (``K = D + 1`` basis functions); chebyshev basis only.
        stride: 1 or 2.
        basis: ``chebyshev`` (``T_k(tanh x)``) or ``rbf`` (Gaussian bumps on [-1, 1]).
        num_bumps: number of Gaussian bumps ``K``; rbf basis only.
    """

    def __init__(self,
                 degree: int = 3,
                 stride: int = 1,
                 basis: str = 'chebyshev',
                 num_bumps: int = 3) -> None:
        super().__init__()
        if basis not in BASIS_CODES:
            raise ValueError(f'KANConv2d: basis={basis!r} is not supported; allowed: '
                             f'{tuple(BASIS_CODES)}')
        if stride not in (1, 2):
            raise ValueError(f'KANConv2d: stride={stride!r} is not supported; allowed: 1, 2')
        if basis == 'chebyshev' and (not isinstance(degree, int) or degree < 0):
            raise ValueError(f'KANConv2d: degree={degree!r} must be an int >= 0')
        if basis == 'rbf' and (not isinstance(num_bumps, int) or num_bumps < 2):
            raise ValueError(f'KANConv2d: num_bumps={num_bumps!r} must be an int >= 2')
        self.degree = degree
        self.stride = stride
        self.basis = basis
        self.num_bumps = num_bumps
        num_functions = degree + 1 if basis == 'chebyshev' else num_bumps
        self.base_weight = nn.Parameter(torch.empty(9))
        self.poly_weight = nn.Parameter(torch.empty(9, num_functions))
        self.scaler = nn.Parameter(torch.empty(9))
        self.base_bias = nn.Parameter(torch.empty(1)) if basis == 'rbf' else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: kaiming-normal base (fan-in 9), N(0, 1/sqrt(9 K)) poly, scaler 1."""
        num_functions = self.poly_weight.shape[1]
        nn.init.normal_(self.base_weight, std=math.sqrt(2 / 9))
        nn.init.normal_(self.poly_weight, std=1 / math.sqrt(9 * num_functions))
        nn.init.ones_(self.scaler)
        if self.base_bias is not None:
            nn.init.zeros_(self.base_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = kan_conv2d(x, self.base_weight, self.poly_weight * self.scaler[:, None], self.stride,
                         self.basis)
        if self.base_bias is not None:
            out = out + self.base_bias.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        if self.basis == 'rbf':
            return f'num_bumps={self.num_bumps}, stride={self.stride}, basis={self.basis!r}'
        return f'degree={self.degree}, stride={self.stride}, basis={self.basis!r}'
