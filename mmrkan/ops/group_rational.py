"""Group-rational activation of KAT (GR-KAN); maths in ``docs/ops.md``, "Group-rational activation"."""
import torch
from torch import nn

from mmrkan.registry import register_model
from .export import is_exporting
from .library import check_tensors, compute_dtype, has_kernel
from .reference import group_rational_reference

# Initial (numerator a0..a5, denominator b1..b4) per init mode. swish is the authors' fit used by
# every released model; gelu is a least-squares fit of GELU on [-3, 3] for the real
# (sum-of-absolute-terms) denominator: the authors' "gelu" entry was fitted for another formula.
RATIONAL_INITS = {
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
}


def group_rational(x: torch.Tensor, numerator: torch.Tensor,
                   denominator: torch.Tensor) -> torch.Tensor:
    """Rational activation ``P(x) / Q(x)`` with one denominator per channel group.

    Args:
        x: ``(..., C)``, channels last; float64/32/16 or bfloat16.
        numerator: ``(1, 6)`` shared by all groups, or ``(g, 6)``: a0..a5.
        denominator: ``(g, 4)``: b1..b4; ``g`` must divide ``C`` (channel ``c`` is in group
            ``c // (C / g)``).

    Returns:
        ``F(x)`` with the shape and dtype of ``x``, computed in fp32 (fp64 for fp64 ``x``).
    """
    check_tensors('group_rational', x=x, numerator=numerator, denominator=denominator)
    if x.dim() < 1:
        raise ValueError('group_rational: x must have at least one dimension (..., C), got a '
                         'scalar')
    if denominator.dim() != 2 or denominator.shape[1] != 4:
        raise ValueError('group_rational: denominator must have shape (g, 4) holding b1..b4, '
                         f'got {tuple(denominator.shape)}')
    groups = denominator.shape[0]
    if numerator.dim() != 2 or numerator.shape[1] != 6 or numerator.shape[0] not in (1, groups):
        raise ValueError('group_rational: numerator must have shape (1, 6) or (g, 6) with '
                         f'g = denominator.shape[0] = {groups}, got {tuple(numerator.shape)}')
    channels = x.shape[-1]
    if groups < 1 or channels % groups != 0:
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

    Stores ``weight_numerator (1, 6)`` (shared) and ``weight_denominator (g, 4)`` (per group),
    the names and shapes of the official KAT checkpoints.

    Args:
        num_groups: channel groups ``g``; must divide the channels of the input.
        init: initial function, one of ``identity``, ``swish``, ``gelu``.
    """

    def __init__(self, num_groups: int = 8, init: str = 'swish') -> None:
        super().__init__()
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f'GroupRational: num_groups={num_groups!r} must be a positive int')
        if init not in RATIONAL_INITS:
            raise ValueError(f'GroupRational: init={init!r} is not supported; allowed: '
                             f'{tuple(RATIONAL_INITS)}')
        self.num_groups = num_groups
        self.init = init
        numerator, denominator = RATIONAL_INITS[init]
        self.weight_numerator = nn.Parameter(torch.tensor([numerator]))
        self.weight_denominator = nn.Parameter(torch.tensor([denominator]).repeat(num_groups, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_rational(x, self.weight_numerator, self.weight_denominator)

    def extra_repr(self) -> str:
        return f'num_groups={self.num_groups}, init={self.init!r}'
