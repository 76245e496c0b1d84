"""Group-rational activation of KAT (GR-KAN); maths in ``docs/ops.md``, "Group-rational activation"."""
from typing import Sequence, Tuple

import torch
from torch import nn

from mmrkan.registry import register_model
from .export import is_exporting
from .library import check_tensors, compute_dtype, has_kernel
from .reference import group_rational_reference

# Rational orders (m, n) the kernels support: numerator degree m, denominator degree n.
RATIONAL_ORDERS = ((3, 2), (5, 4), (7, 6))
DEFAULT_ORDER = (5, 4)

# Initial (numerator a0..am, denominator b1..bn) per order and init mode. (5, 4): swish is the
# authors' fit used by every released model; gelu is their least-squares fit of GELU on [-3, 3]
# for the real (sum-of-absolute-terms) denominator (their entry named "gelu" was fitted for
# another formula). (3, 2) and (7, 6): fitted the same way by tools/misc/fit_rational_inits.py
# (the authors' code has only (5, 4)). Fit errors on [-3, 3]: docs/ops.md.
RATIONAL_INITS = {
    (3, 2): {
        'identity': ([0.0, 1.0, 0.0, 0.0], [0.0, 0.0]),
        'swish': ([
            0.001954476496483017, 0.5039094213542912, 0.24481091566611715, 0.03469887166930742
        ], [-0.008826492943436126, 0.06716653483662959]),
        'gelu': ([
            0.003937652086031554, 0.5148642977897451, 0.3931361241922905, 0.07627568381771925
        ], [0.03526536908955284, 0.14333780377678976]),
    },
    (5, 4): {
        'identity': ([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),
        'swish': ([
            3.054879741161051e-07, 0.5000007853744493, 0.24999783422824703, 0.05326628273219478,
            0.005803034571292244, 0.0002751961022402342
        ], [
            -4.111554955950634e-06, 0.10652899335007572, -1.2690007399796238e-06,
            0.0005502331264140556
        ]),
        'gelu': ([
            -0.0012423594497499122, 0.5080497063245629, 0.41586363182937475, 0.13022718688035761,
            0.024355900098993424, 0.00290283948155535
        ], [
            -0.06675015696494944, 0.17927646217001553, 0.03746682605496631, 1.6561610853276082e-10
        ]),
    },
    (7, 6): {
        'identity': ([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0] * 6),
        'swish': ([
            9.739871909275846e-12, 0.5000000000273768, 0.2499999998778151, 0.05675141291068897,
            0.007542373421719828, 0.0006241833252973836, 3.0782539736826485e-05,
            7.136097019515658e-07
        ], [
            1.9696278658533963e-10, 0.11350282557839302, -1.2974208059116212e-10,
            0.0012483666232591113, -2.626668499059909e-14, 1.4272198925027981e-06
        ]),
        'gelu': ([
            0.000889159758435238, 0.527955296579136, 0.3846976017618779, 4.510741958844728,
            3.6519129244152726, 1.0327340697110408, 0.12396437564302798, 0.0077414805358076684
        ], [
            -0.3980221968251358, -8.093714607474656, 0.9917045460430148, 1.5258977192590748,
            0.14568255719353113, 3.637288333969013e-09
        ]),
    },
}
# Inits with fixed coefficients, and 'random': Xavier-uniform coefficients (the KAT paper's
# Table 8 "random (Xavier)"; the authors' code has no random mode, see docs/ops.md).
FITTED_INIT_NAMES = ('identity', 'swish', 'gelu')
RATIONAL_INIT_NAMES = FITTED_INIT_NAMES + ('random', )


def rational_order(numerator: torch.Tensor, denominator: torch.Tensor) -> Tuple[int, int]:
    """The order ``(m, n)`` of coefficients ``(., m + 1)`` and ``(g, n)``."""
    return numerator.shape[-1] - 1, denominator.shape[-1]


def check_order(owner: str, order, setting: str = 'order') -> Tuple[int, int]:
    """``order`` as a tuple, or a ValueError naming the setting, the value and the supported
    orders."""
    if (not isinstance(order, (tuple, list)) or len(order) != 2
            or tuple(order) not in RATIONAL_ORDERS):
        raise ValueError(f'{owner}: {setting}={order!r} is not supported; allowed: '
                         f'{", ".join(map(str, RATIONAL_ORDERS))} (numerator degree m, '
                         'denominator degree n)')
    return tuple(order)


def check_init(owner: str, init, setting: str = 'init',
               allowed: Sequence[str] = RATIONAL_INIT_NAMES) -> str:
    """``init``, or a ValueError naming the setting, the value and the allowed inits."""
    if init not in allowed:
        raise ValueError(f'{owner}: {setting}={init!r} is not supported; allowed: '
                         f'{tuple(allowed)}')
    return init


def group_rational(x: torch.Tensor, numerator: torch.Tensor,
                   denominator: torch.Tensor) -> torch.Tensor:
    """Rational activation ``P(x) / Q(x)`` with one denominator per channel group.

    The order ``(m, n)`` follows from the coefficient shapes; supported: ``RATIONAL_ORDERS``.

    Args:
        x: ``(..., C)``, channels last; float64/32/16 or bfloat16.
        numerator: ``(1, m + 1)`` shared by all groups, or ``(g, m + 1)``: a0..am.
        denominator: ``(g, n)``: b1..bn; ``g`` must divide ``C`` (channel ``c`` is in group
            ``c // (C / g)``).

    Returns:
        ``F(x)`` with the shape and dtype of ``x``, computed in fp32 (fp64 for fp64 ``x``).
    """
    check_tensors('group_rational', x=x, numerator=numerator, denominator=denominator)
    if x.dim() < 1:
        raise ValueError('group_rational: x must have at least one dimension (..., C), got a '
                         'scalar')
    if denominator.dim() != 2 or denominator.shape[0] < 1:
        raise ValueError('group_rational: denominator must have shape (g, n) holding b1..bn, '
                         f'got {tuple(denominator.shape)}')
    groups = denominator.shape[0]
    if numerator.dim() != 2 or numerator.shape[0] not in (1, groups):
        raise ValueError('group_rational: numerator must have shape (1, m + 1) or (g, m + 1) '
                         f'with g = denominator.shape[0] = {groups}, got '
                         f'{tuple(numerator.shape)}')
    order = rational_order(numerator, denominator)
    if order not in RATIONAL_ORDERS:
        raise ValueError(f'group_rational: order (m, n) = {order} (numerator '
                         f'{tuple(numerator.shape)}, denominator {tuple(denominator.shape)}) is '
                         f'not supported; allowed: {", ".join(map(str, RATIONAL_ORDERS))}')
    channels = x.shape[-1]
    if channels % groups != 0:
        raise ValueError(f'group_rational: the number of groups g = {groups} (num_groups, '
                         f'denominator.shape[0]) must divide the channels C = {channels} '
                         '(last dimension of x)')
    dtype = compute_dtype(x)
    numerator = numerator.to(dtype).contiguous()
    denominator = denominator.to(dtype).contiguous()
    if has_kernel(x.device) and not is_exporting():
        return torch.ops.mmrkan.group_rational_forward(x.contiguous(), numerator, denominator)
    return group_rational_reference(x, numerator, denominator)


@register_model()
class GroupRational(nn.Module):
    """Group-rational activation on tokens-last tensors ``(..., C)``.

    Stores ``weight_numerator (1, m + 1)`` (shared, the official KAT checkpoints' layout) or
    ``(g, m + 1)`` (``per_group_numerator=True``) and ``weight_denominator (g, n)`` (per group):
    for the order (5, 4), ``(1, 6)`` and ``(g, 4)`` as in the official checkpoints.

    Args:
        num_groups: channel groups ``g``; must divide the channels of the input.
        init: the function the rational starts as: ``'identity'``, ``'swish'``, ``'gelu'``
            (coefficients fitted for each order, ``RATIONAL_INITS``), or ``'random'``: every
            coefficient tensor drawn Xavier-uniform (``nn.init.xavier_uniform_``, gain 1, fans
            from its stored shape), the KAT paper's "random (Xavier)" initialisation.
        order: ``(m, n)``, numerator and denominator degrees: ``(3, 2)``, ``(5, 4)`` (the
            KAT models) or ``(7, 6)`` (the KAT paper's order ablation).
        per_group_numerator: give each group its own numerator (``(g, m + 1)``) instead of one
            shared by all groups (``(1, m + 1)``, the released KAT models).
    """

    def __init__(self,
                 num_groups: int = 8,
                 init: str = 'swish',
                 order: Sequence[int] = DEFAULT_ORDER,
                 per_group_numerator: bool = False) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
            raise ValueError(f'{owner}: num_groups={num_groups!r} must be a positive int')
        self.order = check_order(owner, order)
        self.init = check_init(owner, init, allowed=self.init_names())
        self.num_groups = num_groups
        self.per_group_numerator = bool(per_group_numerator)
        m, n = self.order
        self.weight_numerator = nn.Parameter(
            torch.empty(num_groups if per_group_numerator else 1, m + 1))
        self.weight_denominator = nn.Parameter(torch.empty(num_groups, n))
        self.reset_parameters()

    @classmethod
    def init_names(cls) -> Tuple[str, ...]:
        """The values ``init`` takes."""
        return RATIONAL_INIT_NAMES

    def initial_coefficients(self) -> Tuple[Sequence[float], Sequence[float]]:
        """The (numerator, denominator) coefficients of a fitted ``init`` at this order."""
        return RATIONAL_INITS[self.order][self.init]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Set the coefficients to ``init`` (every group the same, or a random draw)."""
        if self.init == 'random':
            nn.init.xavier_uniform_(self.weight_numerator)
            nn.init.xavier_uniform_(self.weight_denominator)
            return
        for param, values in zip((self.weight_numerator, self.weight_denominator),
                                 self.initial_coefficients()):
            param.copy_(torch.tensor(values, dtype=param.dtype).expand_as(param))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_rational(x, self.weight_numerator, self.weight_denominator)

    def extra_repr(self) -> str:
        text = f'num_groups={self.num_groups}, init={self.init!r}'
        if self.order != DEFAULT_ORDER:
            text += f', order={self.order}'
        return text + (', per_group_numerator=True' if self.per_group_numerator else '')
