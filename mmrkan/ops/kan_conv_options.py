"""The options of the KAN convolution, their codes in the op schema and their checks.

Shared by :func:`mmrkan.ops.kan_conv2d` (which hands the codes to the compiled op), the PyTorch
reference (which reads the names) and :class:`mmrkan.ops.KANConv2d`. The maths of every option
is in ``docs/ops.md``, "KAN convolution".
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple

# Codes of the `basis`, `normalization` and `base_activation` arguments of
# torch.ops.mmrkan.kan_conv2d_forward/backward (KanBasis, KanNormalization and
# KanBaseActivation in csrc/kan_ops.h).
BASIS_CODES = {
    'chebyshev': 0,
    'rbf': 1,
    'legendre': 2,
    'jacobi': 3,
    'hermite': 4,
    'b_spline': 5,
}
NORMALIZATION_CODES = {
    'none': 0,
    'tanh': 1,
    'arctan': 2,
    'min-max': 3,
    'standardization': 4,
}
BASE_ACTIVATION_CODES = {'identity': 0, 'silu': 1}

POLYNOMIAL_BASES = ('chebyshev', 'legendre', 'jacobi', 'hermite')
# Normalisations of one value at a time (evaluated once per padded pixel); the others use the
# statistics of the 9 taps of each window.
PIXELWISE_NORMALIZATIONS = ('none', 'tanh')
# The authors' defaults: polynomial families read tanh(x), rbf and b_spline read x.
DEFAULT_NORMALIZATION = {basis: 'tanh' for basis in POLYNOMIAL_BASES}
DEFAULT_NORMALIZATION.update(rbf='none', b_spline='none')
# eps of the min-max and standardization denominators, as in the authors' layer.
NORMALIZATION_EPS = 1e-8
# Highest B-spline order the kernels take (csrc/kan_ops.h, kMaxSplineOrder).
MAX_SPLINE_ORDER = 5

DEFAULT_JACOBI_ALPHA_BETA = (0.5, 0.5)
DEFAULT_GRID_RANGE = (-1.0, 1.0)
DEFAULT_SPLINE_ORDER = 3


class KANConvOptions(NamedTuple):
    """Checked options of one KAN convolution."""
    basis: str
    normalization: str
    base_activation: str
    # basis_params of the op schema: () for chebyshev/legendre/hermite; (alpha, beta) for jacobi;
    # (grid_min, grid_max) for rbf; (grid_min, grid_max, spline_order) for b_spline.
    basis_params: Tuple[float, ...]

    @property
    def codes(self) -> Tuple[int, int, int]:
        return (BASIS_CODES[self.basis], NORMALIZATION_CODES[self.normalization],
                BASE_ACTIVATION_CODES[self.base_activation])


def _allowed(values: Sequence[str]) -> str:
    return str(tuple(values))


def check_choice(owner: str, name: str, value, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f'{owner}: {name}={value!r} is not supported; allowed: '
                         f'{_allowed(allowed)}')


def min_num_functions(basis: str, spline_order: int) -> int:
    """Fewest basis functions K the basis takes: 2 bumps for rbf, one interval for b_spline."""
    if basis == 'rbf':
        return 2
    if basis == 'b_spline':
        return spline_order + 1
    return 1


def kan_conv2d_options(owner: str,
                       basis: str = 'chebyshev',
                       normalization: Optional[str] = None,
                       base_activation: str = 'identity',
                       jacobi_alpha: Optional[float] = None,
                       jacobi_beta: Optional[float] = None,
                       grid_range: Optional[Sequence[float]] = None,
                       spline_order: Optional[int] = None) -> KANConvOptions:
    """Checks the options (ValueError naming ``owner``, the setting, the value and what is
    allowed) and fills in the defaults: ``normalization=None`` is the family's default (tanh for
    the polynomial families, none for rbf and b_spline); basis-specific settings left at None take
    the authors' defaults and must stay None for the other bases."""
    check_choice(owner, 'basis', basis, tuple(BASIS_CODES))
    if normalization is None:
        normalization = DEFAULT_NORMALIZATION[basis]
    check_choice(owner, 'normalization', normalization, tuple(NORMALIZATION_CODES))
    check_choice(owner, 'base_activation', base_activation, tuple(BASE_ACTIVATION_CODES))
    specific = dict(jacobi_alpha=('jacobi', ), jacobi_beta=('jacobi', ),
                    grid_range=('rbf', 'b_spline'), spline_order=('b_spline', ))
    given = dict(jacobi_alpha=jacobi_alpha, jacobi_beta=jacobi_beta, grid_range=grid_range,
                 spline_order=spline_order)
    for name, bases in specific.items():
        if given[name] is not None and basis not in bases:
            raise ValueError(f'{owner}: {name}={given[name]!r} is only used by basis '
                             f'{" or ".join(map(repr, bases))}, got basis={basis!r}; leave it '
                             'None')
    if basis == 'jacobi':
        alpha, beta = DEFAULT_JACOBI_ALPHA_BETA
        alpha = alpha if jacobi_alpha is None else jacobi_alpha
        beta = beta if jacobi_beta is None else jacobi_beta
        for name, value in (('jacobi_alpha', alpha), ('jacobi_beta', beta)):
            if not _is_real(value) or not value > -1:
                raise ValueError(f'{owner}: {name}={value!r} must be a finite number > -1 (the '
                                 'Jacobi polynomials need alpha, beta > -1)')
        return KANConvOptions(basis, normalization, base_activation, (float(alpha), float(beta)))
    if basis in ('rbf', 'b_spline'):
        grid_range = DEFAULT_GRID_RANGE if grid_range is None else grid_range
        if (not isinstance(grid_range, Sequence) or len(grid_range) != 2
                or not all(_is_real(v) for v in grid_range) or not grid_range[0] < grid_range[1]):
            raise ValueError(f'{owner}: grid_range={grid_range!r} must be two finite numbers '
                             '(low, high) with low < high')
        params = (float(grid_range[0]), float(grid_range[1]))
        if basis == 'rbf':
            return KANConvOptions(basis, normalization, base_activation, params)
        spline_order = DEFAULT_SPLINE_ORDER if spline_order is None else spline_order
        if (not isinstance(spline_order, int) or isinstance(spline_order, bool)
                or not 1 <= spline_order <= MAX_SPLINE_ORDER):
            raise ValueError(f'{owner}: spline_order={spline_order!r} is not supported; allowed: '
                             f'an int from 1 to {MAX_SPLINE_ORDER}')
        return KANConvOptions(basis, normalization, base_activation,
                              params + (float(spline_order), ))
    return KANConvOptions(basis, normalization, base_activation, ())


def _is_real(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
