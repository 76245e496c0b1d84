"""GR-KAN, the channel mixer of KAT (``docs/models.md``, "GR-KAN")."""
import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmengine.model import BaseModule
from torch import nn

from mmrkan.ops import GroupRational
from mmrkan.ops.group_rational import DEFAULT_ORDER, check_init, check_order


def rational_gain(rational: GroupRational, num_nodes: int = 64) -> float:
    """``1 / E[F(x)^2]`` for ``x ~ N(0, 1)``, computed from ``rational``'s current coefficients.

    A linear layer with ``fan_in`` inputs that follows ``F`` keeps unit variance when its weights
    have variance ``gain / fan_in``. The expectation is a Gauss-Hermite quadrature, averaged over
    the channel groups.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
    weights = torch.as_tensor(weights / weights.sum())  # probabilities of the N(0, 1) nodes
    # One column per group: the group-rational applies group j's coefficients to column j.
    x = torch.as_tensor(nodes)[:, None].repeat(1, rational.num_groups)
    with torch.no_grad():
        second_moment = (weights[:, None] * rational(x)**2).sum(0).mean()
    return 1.0 / second_moment.item()


# ``num_groups`` value for one rational per channel (the KAT paper's "ungrouped" KAN).
PER_CHANNEL = 'per_channel'


def rational_groups(owner: str, num_groups: Union[int, str], channels: int,
                    setting: str) -> int:
    """The groups of a rational on ``channels`` channels: ``num_groups``, or ``channels`` for
    ``'per_channel'``; a ValueError naming the settings when they do not fit."""
    if num_groups == PER_CHANNEL:
        return channels
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise ValueError(f'{owner}: num_groups={num_groups!r} is not supported; allowed: a '
                         f'positive int dividing the channels, or {PER_CHANNEL!r}')
    if channels % num_groups != 0:
        raise ValueError(f'{owner}: {setting}={channels} must be divisible by '
                         f'num_groups={num_groups}')
    return num_groups


class GRKAN(BaseModule):
    """Group-rational KAN: ``rational1 -> drop -> fc1 -> rational2 -> drop -> fc2``.

    The activations come before the linears, as in the released KAT models: ``rational1`` starts
    as ``rational1_init`` (the identity), ``rational2`` as ``act_init`` (swish for every
    released model). Both use ``num_groups`` channel groups; both linears have biases.

    Args:
        embed_dims: input and output channels ``D``.
        feedforward_channels: hidden channels (``4D`` in KAT).
        num_groups: channel groups of both rationals; must divide both channel counts.
            ``'per_channel'``: one group per channel (``D`` groups in ``rational1``, one per
            hidden channel in ``rational2``), the KAT paper's ungrouped rational.
        act_init: initial function of ``rational2``: ``'swish'``, ``'gelu'``, ``'identity'``
            or ``'random'`` (Xavier-uniform coefficients). ``'gelu'`` gives the KAT* variants
            initialised from a ViT/DeiT.
        drop_rate: dropout after each rational.
        variance_preserving_init: if True, :meth:`init_weights` draws each linear's weights from
            ``N(0, gain / fan_in)`` with ``gain = 1 / E[F(x)^2]`` of the rational before it
            (x ~ N(0, 1); 1 for the identity, about 2.82 for swish) and zeroes the biases, so a
            unit-variance input keeps unit variance through the mixer (the KAT paper's
            initialisation). If False the linears keep the initialisation given by ``init_cfg``
            (a model-level ``TruncNormal`` std 0.02 in the classification configs, as timm's
            ViT/KAT).
        rational_order: ``(m, n)`` of both rationals: ``(5, 4)`` (default, the released
            models), ``(3, 2)`` or ``(7, 6)``.
        rational1_init: initial function of ``rational1``, the inits of ``act_init``
            (default ``'identity'``, the released models).
        per_group_numerator: give each group of both rationals its own numerator (the released
            models share one numerator per rational).
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 embed_dims: int,
                 feedforward_channels: int,
                 num_groups: Union[int, str] = 8,
                 act_init: str = 'swish',
                 drop_rate: float = 0.,
                 variance_preserving_init: bool = False,
                 rational_order: Sequence[int] = DEFAULT_ORDER,
                 rational1_init: str = 'identity',
                 per_group_numerator: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        groups1 = rational_groups('GRKAN', num_groups, embed_dims, 'embed_dims')
        groups2 = rational_groups('GRKAN', num_groups, feedforward_channels,
                                  'feedforward_channels')
        rational_order = check_order('GRKAN', rational_order, 'rational_order')
        check_init('GRKAN', rational1_init, 'rational1_init')
        check_init('GRKAN', act_init, 'act_init')
        self.variance_preserving_init = variance_preserving_init
        self.rational1 = GroupRational(groups1, rational1_init, rational_order,
                                       per_group_numerator)
        self.drop1 = nn.Dropout(drop_rate)
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.rational2 = GroupRational(groups2, act_init, rational_order, per_group_numerator)
        self.drop2 = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)

    def init_weights(self) -> None:
        super().init_weights()
        if self.variance_preserving_init:
            for rational, fc in ((self.rational1, self.fc1), (self.rational2, self.fc2)):
                nn.init.normal_(fc.weight, std=math.sqrt(rational_gain(rational) / fc.in_features))
                nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., embed_dims)``, channels last."""
        x = self.fc1(self.drop1(self.rational1(x)))
        return self.fc2(self.drop2(self.rational2(x)))
