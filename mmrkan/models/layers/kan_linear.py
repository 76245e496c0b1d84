"""B-spline KAN layers: efficient-KAN's ``KANLinear`` and a two-layer KAN channel mixer.

The KAT paper's "ViT + KAN" comparison replaces a ViT's MLP by a standard B-spline KAN
(``docs/models.md``, "ViT + KAN").
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import nn

from mmrkan.ops.reference import b_spline_basis


class KANLinear(nn.Module):
    """efficient-KAN's ``KANLinear``: a KAN layer whose edge functions are B-splines.

    For an input ``x`` of ``in_features`` values, output ``o`` is

    ``y_o = sum_i base_weight[o, i] * act(x_i)
    + sum_i spline_scaler[o, i] * sum_j spline_weight[o, i, j] * B_j(x_i)  (+ bias[o])``

    with ``act`` SiLU and ``B_j`` the ``grid_size + spline_order`` B-splines of order
    ``spline_order`` on ``grid_size`` uniform intervals of ``grid_range``, extended by
    ``spline_order`` intervals on each side (:func:`mmrkan.ops.reference.b_spline_basis`, the
    Cox-de Boor recursion of efficient-KAN; every basis is 0 outside the extended grid).

    Initialisation, as efficient-KAN's ``reset_parameters``: ``base_weight`` kaiming-uniform with
    ``a = sqrt(5) * scale_base``; ``spline_weight`` the least-squares spline coefficients that
    interpolate uniform noise in ``±scale_noise / 2 / grid_size`` at the ``grid_size + 1`` knots of
    ``grid_range`` (times ``scale_spline`` without a standalone scaler); ``spline_scaler``
    kaiming-uniform with ``a = sqrt(5) * scale_spline``. The grid stays fixed (efficient-KAN's
    ``update_grid`` and its ``grid_eps`` are not implemented).

    Args:
        in_features: input channels (last dimension).
        out_features: output channels.
        grid_size: intervals ``G`` of the grid on ``grid_range``.
        spline_order: order ``k`` of the B-splines (3: cubic); at least 1.
        scale_noise: amplitude of the noise the initial splines interpolate.
        scale_base: scales the ``a`` of the base weights' kaiming-uniform init.
        scale_spline: scales the ``a`` of the scalers' init (or the splines without scalers).
        enable_standalone_scale_spline: learn the per-edge ``spline_scaler`` (efficient-KAN's
            default); without it each edge has ``G + k + 1`` parameters instead of ``G + k + 2``.
        base_act_cfg: the activation of the base term (efficient-KAN: SiLU).
        grid_range: ``(low, high)`` of the grid.
        bias: add a learnable output bias (not in efficient-KAN, whose default this is: False).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 grid_size: int = 5,
                 spline_order: int = 3,
                 scale_noise: float = 0.1,
                 scale_base: float = 1.0,
                 scale_spline: float = 1.0,
                 enable_standalone_scale_spline: bool = True,
                 base_act_cfg: dict = dict(type='SiLU'),
                 grid_range: Sequence[float] = (-1.0, 1.0),
                 bias: bool = False) -> None:
        super().__init__()
        for name, value, minimum in (('in_features', in_features, 1),
                                     ('out_features', out_features, 1),
                                     ('grid_size', grid_size, 1),
                                     ('spline_order', spline_order, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f'KANLinear: {name}={value!r} must be an int >= {minimum}')
        if len(grid_range) != 2 or not grid_range[0] < grid_range[1]:
            raise ValueError(f'KANLinear: grid_range={grid_range!r} must be (low, high) with '
                             'low < high')
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = tuple(float(v) for v in grid_range)
        self.scale_noise = scale_noise
        self.scale_base = scale_base
        self.scale_spline = scale_spline
        self.enable_standalone_scale_spline = enable_standalone_scale_spline
        self.base_activation = build_activation_layer(base_act_cfg)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(
            torch.empty(out_features, in_features, grid_size + spline_order))
        if enable_standalone_scale_spline:
            self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features, grid_size + spline_order)``: the basis at every input value."""
        return b_spline_basis(x, self.grid_size, self.spline_order, self.grid_range)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        low, high = self.grid_range
        knots = torch.arange(self.grid_size + 1) * ((high - low) / self.grid_size) + low
        noise = ((torch.rand(self.grid_size + 1, self.in_features, self.out_features) - 1 / 2) *
                 self.scale_noise / self.grid_size)
        # The coefficients whose splines take the noise's values at the knots: basis
        # (G + 1, G + k) x coefficients (G + k, in * out) = noise (G + 1, in * out). Every edge
        # has the same grid, so one system with in * out right-hand sides (efficient-KAN solves
        # one per input feature: the same solution, ~100x slower at ViT-B's widths).
        basis = self.b_splines(knots)
        coefficients = torch.linalg.lstsq(basis, noise.flatten(1)).solution
        coefficients = coefficients.view(-1, self.in_features, self.out_features)
        scale = 1.0 if self.enable_standalone_scale_spline else self.scale_spline
        self.spline_weight.copy_(scale * coefficients.permute(2, 1, 0))
        if self.enable_standalone_scale_spline:
            nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def scaled_spline_weight(self) -> torch.Tensor:
        """``spline_weight`` times the per-edge scaler, ``(out, in, G + k)``."""
        if not self.enable_standalone_scale_spline:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., in_features)``."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f'KANLinear: the input has {x.shape[-1]} features in its last '
                             f'dimension, the layer in_features={self.in_features}')
        bases = self.b_splines(x).flatten(-2)
        out = F.linear(self.base_activation(x), self.base_weight)
        return out + F.linear(bases, self.scaled_spline_weight.flatten(1), self.bias)

    def extra_repr(self) -> str:
        text = (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'grid_size={self.grid_size}, spline_order={self.spline_order}')
        if not self.enable_standalone_scale_spline:
            text += ', enable_standalone_scale_spline=False'
        return text + (', bias=True' if self.bias is not None else '')


class BSplineKAN(BaseModule):
    """Two-layer B-spline KAN channel mixer: ``KANLinear -> drop -> KANLinear -> drop``.

    The "standard KAN" the KAT paper puts in place of a ViT's MLP (``fc1 -> act -> drop ->
    fc2 -> drop``): the same widths, the activation inside the KAN layers.

    Args:
        embed_dims: input and output channels ``D``.
        feedforward_channels: hidden channels.
        drop_rate: dropout after each layer.
        **kan_cfg: :class:`KANLinear` arguments (``grid_size``, ``spline_order``, ``bias``...).
    """

    def __init__(self,
                 embed_dims: int,
                 feedforward_channels: int,
                 drop_rate: float = 0.,
                 init_cfg: Optional[dict] = None,
                 **kan_cfg) -> None:
        super().__init__(init_cfg=init_cfg)
        self.fc1 = KANLinear(embed_dims, feedforward_channels, **kan_cfg)
        self.drop1 = nn.Dropout(drop_rate)
        self.fc2 = KANLinear(feedforward_channels, embed_dims, **kan_cfg)
        self.drop2 = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.fc1(x))))
