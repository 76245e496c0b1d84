"""KAN convolution of RKAN, every family of the authors' code; the maths: ``docs/ops.md``,
"KAN convolution"."""
import math
import warnings
from typing import Optional, Sequence

import torch
from torch import nn

from mmrkan.registry import register_model
from .export import is_exporting
from .kan_conv_options import (DEFAULT_NORMALIZATION, POLYNOMIAL_BASES,
                               KANConvOptions, check_choice, kan_conv2d_options,
                               min_num_functions)
from .library import check_tensors, compute_dtype, has_kernel
from .reference import b_spline_basis, kan_conv2d_reference_with_options


# Basis functions K the CUDA kernels take (kMaxFunctions in csrc/common/cuda/kan_conv2d_kernel.cuh).
CUDA_MAX_FUNCTIONS = 8


def cuda_kernels_unsupported(num_functions: int) -> Optional[str]:
    """What the CUDA kernels do not run (None if they run it); the same cases as the launcher's
    check (``unsupported_by_kernels`` in csrc/cuda/kan_conv2d_launcher.h)."""
    if num_functions > CUDA_MAX_FUNCTIONS:
        return f'K={num_functions} basis functions (they support 1 to {CUDA_MAX_FUNCTIONS})'
    return None


def kan_conv2d(x: torch.Tensor,
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
    """Depthwise 3x3 KAN convolution with one kernel shared by all channels, zero padding 1.

    ``y = sum_p base_weight[p] * act(x_p) + sum_p sum_k poly_weight[p, k] * B_k(t_p)`` over the
    9 taps ``p`` of each window (row-major), ``t = normalize(x)``. ``x`` is padded before
    anything else, so padded taps are taps of value 0.

    Args:
        x: ``(N, C, H, W)``; float64/32/16 or bfloat16.
        base_weight: ``(9,)``.
        poly_weight: ``(9, K)``: the weights of the ``K`` basis functions: polynomial families
            of degree ``D = K - 1``; ``rbf``: ``K >= 2`` bumps; ``b_spline``:
            ``K = grid_size + spline_order``.
        stride: 1 or 2; the output is ``floor((H - 1) / stride) + 1`` high (same for W).
        basis: ``chebyshev``, ``legendre``, ``jacobi``, ``hermite`` (polynomials of ``t``),
            ``rbf`` (Gaussian bumps on a grid) or ``b_spline`` (efficient-KAN's B-splines).
        normalization: ``t`` from ``x``: ``none``, ``tanh``, ``arctan``, ``min-max`` or
            ``standardization`` (the last three with the statistics of the window's 9 taps).
            None: ``tanh`` for the polynomial families, ``none`` for rbf and b_spline.
        base_activation: ``identity`` (the authors' ``skip_activation=True``) or ``silu``.
        norm_scale: the learnable scale ``s`` of ``arctan`` (one value); arctan only.
        jacobi_alpha, jacobi_beta: ``jacobi`` only; default 0.5 each.
        grid_range: ``(low, high)`` of the bump centres (``rbf``) or of the spline grid
            (``b_spline``); default ``(-1, 1)``.
        spline_order: ``b_spline`` only, 1 to 5; default 3.

    Returns:
        ``(N, C, Hout, Wout)`` in the dtype of ``x``, computed in fp32 (fp64 for fp64 ``x``).
    """
    options = kan_conv2d_options('kan_conv2d', basis, normalization, base_activation,
                                 jacobi_alpha, jacobi_beta, grid_range, spline_order)
    return kan_conv2d_with_options(x, base_weight, poly_weight, stride, options, norm_scale)


def kan_conv2d_with_options(x: torch.Tensor,
                            base_weight: torch.Tensor,
                            poly_weight: torch.Tensor,
                            stride: int,
                            options: KANConvOptions,
                            norm_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`kan_conv2d` with options checked by
    :func:`~mmrkan.ops.kan_conv_options.kan_conv2d_options` (once, e.g. by a module)."""
    tensors = dict(x=x, base_weight=base_weight, poly_weight=poly_weight)
    if norm_scale is not None:
        tensors['norm_scale'] = norm_scale
    check_tensors('kan_conv2d', **tensors)
    if x.dim() != 4 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError('kan_conv2d: x must have shape (N, C, H, W) with H, W >= 1, got '
                         f'{tuple(x.shape)}')
    if base_weight.shape != (9, ):
        raise ValueError('kan_conv2d: base_weight must have shape (9,) (one weight per tap of the '
                         f'3x3 window), got {tuple(base_weight.shape)}')
    basis = options.basis
    min_functions = min_num_functions(basis, int(options.basis_params[-1]) if basis == 'b_spline'
                                      else 0)
    if poly_weight.dim() != 2 or poly_weight.shape[0] != 9 or poly_weight.shape[1] < min_functions:
        raise ValueError(f'kan_conv2d: poly_weight must have shape (9, K) with K >= {min_functions}'
                         f' for basis={basis!r}, got {tuple(poly_weight.shape)}')
    if stride not in (1, 2):
        raise ValueError(f'kan_conv2d: stride={stride!r} is not supported; allowed: 1, 2')
    if (norm_scale is None) != (options.normalization != 'arctan'):
        raise ValueError("kan_conv2d: norm_scale (one value) is the scale of "
                         "normalization='arctan' and only of it; got "
                         f"normalization={options.normalization!r}, norm_scale="
                         f"{'None' if norm_scale is None else tuple(norm_scale.shape)}")
    if norm_scale is not None and norm_scale.numel() != 1:
        raise ValueError('kan_conv2d: norm_scale must hold one value, got shape '
                         f'{tuple(norm_scale.shape)}')
    dtype = compute_dtype(x)
    base_weight = base_weight.to(dtype).contiguous()
    poly_weight = poly_weight.to(dtype).contiguous()
    norm_scale = (x.new_zeros(1, dtype=dtype) if norm_scale is None else
                  norm_scale.to(dtype).reshape(1))
    if has_kernel(x.device) and not is_exporting():
        unsupported = (cuda_kernels_unsupported(poly_weight.shape[1])
                       if x.device.type == 'cuda' else None)
        if unsupported is None:
            return torch.ops.mmrkan.kan_conv2d_forward(x.contiguous(), base_weight, poly_weight,
                                                       norm_scale, stride, *options.codes,
                                                       list(options.basis_params))
        warnings.warn(f'kan_conv2d: the CUDA kernels do not support {unsupported}; '
                      f'basis={options.basis!r} runs the slow PyTorch reference')
    return kan_conv2d_reference_with_options(x, base_weight, poly_weight, norm_scale, stride,
                                             options)


# Bases of the module: those of the op, plus rbf_paper (the rbf op basis in mmrkan's earlier
# layer, see KANConv2d).
MODULE_BASES = ('chebyshev', 'legendre', 'jacobi', 'hermite', 'rbf', 'rbf_paper', 'b_spline')


def _kaiming_uniform_(tensor: torch.Tensor, a: float, fan_in: int = 9) -> None:
    """``nn.init.kaiming_uniform_`` of a ``(1, fan_in)`` weight, on a tensor of any shape."""
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    nn.init.uniform_(tensor, -bound, bound)


@register_model()
class KANConv2d(nn.Module):
    """RKAN's KAN convolution: a 3x3 depthwise KAN kernel shared by all channels.

    Parameters (names shared by every family; the authors' names in parentheses):

    - ``base_weight (9,)`` (``base_linear.weight`` / ``base_weight``), if ``use_linear``;
    - ``poly_weight (9, K)`` (``polynomial_weight`` / ``spline_linear.weight`` /
      ``spline_weight``);
    - ``scaler (9,)`` (``scaler`` / ``spline_scaler``), if ``use_scaler``: the op receives
      ``poly_weight * scaler[:, None]``;
    - ``base_bias (1,)`` (``base_linear.bias``): ``rbf`` and ``rbf_paper`` with ``use_linear``;
      one scalar because the kernel is shared by all channels;
    - ``arctan_scale ()`` (``arctan_scale``), with ``normalization='arctan'``, initially 0.1.

    Families and their authors' defaults and initialisations:

    - ``chebyshev`` (default), ``legendre``, ``jacobi``, ``hermite``: degree ``D`` (``K = D +
      1``), tanh normalisation, scaler on; base ~ N(0, sqrt(2/9)) (kaiming-normal),
      poly ~ N(0, 1/sqrt(9 K)), scaler 1. 54 parameters for D = 3, 45 for D = 2.
    - ``rbf`` (FastKAN): ``num_bumps`` Gaussian bumps on ``grid_range``, raw x, base linear with
      bias, no scaler; poly ~ truncated N(0, scale_spline) on [-2, 2], base and bias ~ U(-1/3,
      1/3) (``nn.Linear(9, 1)``'s default). 37 parameters for 3 bumps.
    - ``rbf_paper``: mmrkan's earlier rbf layer (the paper's sentence: bumps on [-1, 1], raw x,
      a base linear with bias), with a scaler and the Chebyshev initialisation, bias 0. 46
      parameters for 3 bumps.
    - ``b_spline`` (efficient-KAN): ``grid_size`` intervals on ``grid_range``, splines of
      order ``degree`` (efficient-KAN's ``spline_order``), raw x, scaler on; base and scaler
      ~ kaiming-uniform(a = sqrt(5) * scale_base / scale_spline) (U(-1/3, 1/3) by default),
      poly least-squares fitted to uniform noise of amplitude ``scale_noise / grid_size`` at the
      ``grid_size + 1`` grid points. 72 parameters for grid 3, order 3.

    Args:
        degree: Polynomial degree ``D`` of the polynomial families, spline order of
            ``b_spline`` (1 to 5); not used by the rbf bases (accepted for callers that pass
            it for every basis).
        stride: 1 or 2.
        basis: One of ``MODULE_BASES``.
        num_bumps: Number of bumps ``K >= 2`` of the rbf bases (not used by the others).
        normalization: See :func:`kan_conv2d`; None: the family's default.
        use_linear: Whether the base term (and the rbf bias) exists.
        skip_activation: True: the base term reads ``x``; False: ``silu(x)``.
        use_scaler: Whether the per-tap scaler exists; None: the family's default.
        jacobi_alpha, jacobi_beta: ``jacobi`` only (None: 0.5).
        grid_size: Number of grid intervals of ``b_spline`` only (None: 3).
        grid_range: rbf bases and ``b_spline`` only (None: ``(-1, 1)``).
        scale_noise, scale_base: ``b_spline``'s initialisation only (None: 0.1, 1.0).
        scale_spline: Initialisation of ``rbf`` (std of the bumps' weights) and ``b_spline``
            (None: 1.0).
    """

    def __init__(self,
                 degree: int = 3,
                 stride: int = 1,
                 basis: str = 'chebyshev',
                 num_bumps: int = 3,
                 normalization: Optional[str] = None,
                 use_linear: bool = True,
                 skip_activation: bool = True,
                 use_scaler: Optional[bool] = None,
                 jacobi_alpha: Optional[float] = None,
                 jacobi_beta: Optional[float] = None,
                 grid_size: Optional[int] = None,
                 grid_range: Optional[Sequence[float]] = None,
                 scale_noise: Optional[float] = None,
                 scale_base: Optional[float] = None,
                 scale_spline: Optional[float] = None) -> None:
        super().__init__()
        check_choice('KANConv2d', 'basis', basis, MODULE_BASES)
        if stride not in (1, 2):
            raise ValueError(f'KANConv2d: stride={stride!r} is not supported; allowed: 1, 2')
        op_basis = 'rbf' if basis == 'rbf_paper' else basis
        uses = dict(grid_size=('b_spline', ), scale_noise=('b_spline', ),
                    scale_base=('b_spline', ), scale_spline=('rbf', 'b_spline'))
        given = dict(grid_size=grid_size, scale_noise=scale_noise, scale_base=scale_base,
                     scale_spline=scale_spline)
        for name, bases in uses.items():
            if given[name] is not None and basis not in bases:
                raise ValueError(f'KANConv2d: {name}={given[name]!r} is only used by basis '
                                 f'{" or ".join(map(repr, bases))}, got basis={basis!r}')
        for name, value in (('use_linear', use_linear), ('skip_activation', skip_activation),
                            ('use_scaler', use_scaler)):
            if not isinstance(value, bool) and not (name == 'use_scaler' and value is None):
                raise ValueError(f'KANConv2d: {name}={value!r} must be True or False')
        if basis in POLYNOMIAL_BASES + ('b_spline', ):
            if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0 or (
                    basis == 'b_spline' and not 1 <= degree <= 5):
                allowed = 'an int from 1 to 5' if basis == 'b_spline' else 'an int >= 0'
                raise ValueError(f'KANConv2d: degree={degree!r} is not supported for '
                                 f'basis={basis!r}; allowed: {allowed}')
        if basis in ('rbf', 'rbf_paper') and (not isinstance(num_bumps, int)
                                             or isinstance(num_bumps, bool) or num_bumps < 2):
            raise ValueError(f'KANConv2d: num_bumps={num_bumps!r} must be an int >= 2')
        if basis == 'b_spline':
            grid_size = 3 if grid_size is None else grid_size
            if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
                raise ValueError(f'KANConv2d: grid_size={grid_size!r} must be an int >= 1')
        self.options: KANConvOptions = kan_conv2d_options(
            'KANConv2d', op_basis, normalization,
            'identity' if skip_activation else 'silu', jacobi_alpha, jacobi_beta,
            None if grid_range is None else tuple(grid_range),
            degree if basis == 'b_spline' else None)
        self.degree = degree
        self.stride = stride
        self.basis = basis
        self.num_bumps = num_bumps
        self.grid_size = grid_size
        self.use_linear = use_linear
        self.skip_activation = skip_activation
        self.use_scaler = basis != 'rbf' if use_scaler is None else use_scaler
        self.scale_noise = 0.1 if scale_noise is None else scale_noise
        self.scale_base = 1.0 if scale_base is None else scale_base
        self.scale_spline = 1.0 if scale_spline is None else scale_spline
        if basis in POLYNOMIAL_BASES:
            num_functions = degree + 1
        elif basis == 'b_spline':
            num_functions = grid_size + degree
        else:
            num_functions = num_bumps
        self.base_weight = nn.Parameter(torch.empty(9)) if use_linear else None
        self.poly_weight = nn.Parameter(torch.empty(9, num_functions))
        self.scaler = nn.Parameter(torch.empty(9)) if self.use_scaler else None
        has_bias = use_linear and op_basis == 'rbf'
        self.base_bias = nn.Parameter(torch.empty(1)) if has_bias else None
        self.arctan_scale = (nn.Parameter(torch.empty(()))
                             if self.options.normalization == 'arctan' else None)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' initialisation of the family (see the class documentation)."""
        num_functions = self.poly_weight.shape[1]
        if self.basis == 'rbf':  # FastKAN: SplineLinear and nn.Linear(9, 1) defaults
            nn.init.trunc_normal_(self.poly_weight, std=self.scale_spline, a=-2.0, b=2.0)
            linear_init, scaler_init = 'kaiming_uniform', 'ones'
        elif self.basis == 'b_spline':
            self.poly_weight.copy_(self._b_spline_noise_fit())
            linear_init, scaler_init = 'kaiming_uniform', 'kaiming_uniform'
        else:
            nn.init.normal_(self.poly_weight, std=1 / math.sqrt(9 * num_functions))
            linear_init, scaler_init = 'kaiming_normal', 'ones'
        if self.base_weight is not None:
            if linear_init == 'kaiming_normal':
                nn.init.normal_(self.base_weight, std=math.sqrt(2 / 9))
            else:
                _kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        if self.scaler is not None:
            if scaler_init == 'ones':
                nn.init.ones_(self.scaler)
            else:
                _kaiming_uniform_(self.scaler, a=math.sqrt(5) * self.scale_spline)
        if self.base_bias is not None:
            if self.basis == 'rbf':
                nn.init.uniform_(self.base_bias, -1 / 3, 1 / 3)
            else:
                nn.init.zeros_(self.base_bias)
        if self.arctan_scale is not None:
            self.arctan_scale.fill_(0.1)

    def _b_spline_noise_fit(self) -> torch.Tensor:
        """efficient-KAN's spline init: least-squares coefficients of uniform noise of amplitude
        ``scale_noise / grid_size`` at the ``grid_size + 1`` grid points, per tap."""
        low, high, order = self.options.basis_params
        points = torch.linspace(low, high, self.grid_size + 1, dtype=torch.float64)
        noise = (torch.rand(self.grid_size + 1, 9) - 0.5) * self.scale_noise / self.grid_size
        design = b_spline_basis(points, self.grid_size, int(order), (low, high))
        solution = torch.linalg.lstsq(design, noise.double()).solution  # (G + k, 9)
        return solution.t().to(self.poly_weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        poly_weight = self.poly_weight
        if self.scaler is not None:
            poly_weight = poly_weight * self.scaler[:, None]
        base_weight = (self.base_weight if self.base_weight is not None else
                       x.new_zeros(9, dtype=poly_weight.dtype))
        out = kan_conv2d_with_options(x, base_weight, poly_weight, self.stride, self.options,
                                      self.arctan_scale)
        if self.base_bias is not None:
            out = out + self.base_bias.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        if self.basis in ('rbf', 'rbf_paper'):
            size = f'num_bumps={self.num_bumps}'
        elif self.basis == 'b_spline':
            size = f'grid_size={self.grid_size}, degree={self.degree}'
        else:
            size = f'degree={self.degree}'
        text = f'{size}, stride={self.stride}, basis={self.basis!r}'
        if self.options.normalization != DEFAULT_NORMALIZATION[self.options.basis]:
            text += f', normalization={self.options.normalization!r}'
        if self.options.basis_params and self.basis != 'rbf_paper':
            text += f', basis_params={self.options.basis_params}'
        for name, default in (('use_linear', True), ('skip_activation', True)):
            if getattr(self, name) != default:
                text += f', {name}={getattr(self, name)}'
        return text

