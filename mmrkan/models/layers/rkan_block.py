"""The RKAN branch: a residual Chebyshev-KAN block attached beside one stage of a CNN.

RKAN (arXiv 2410.05500) adds, to the output of a CNN stage, a light branch computed from the
stage's input (``docs/models.md``, "The RKAN block")::

    r = Conv1x1(C_in -> C_mid) -> SiLU -> KANConv(degree, stride of the stage) -> BN(C_mid)
        -> Conv1x1(C_mid -> C_out) -> SiLU -> [KANConv(out_degree, stride 1)] -> BN(C_out)
    out = aggregate(stage_out, r)
"""
from typing import List, Optional, Union

import torch
from mmcv.cnn import build_norm_layer
from mmdet.models.layers import SELayer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrkan.ops import KANConv2d
from mmrkan.registry import register_model

RKAN_AGGREGATIONS = ('addition', 'gating', 'se')
RKAN_BASES = ('chebyshev', 'rbf')


@register_model()
class RKANBlock(BaseModule):
    """Residual KAN branch of one stage, with the aggregation into the stage output.

    Args:
        in_channels: Channels of the stage input.
        out_channels: Channels of the stage output.
        mid_channels: Width between the two 1x1 convolutions: ``in_channels / reduce_factor``
            for RKAN, ``in_channels * expansion`` for the inverse bottleneck of RKAN-L.
        stride: Spatial stride of the stage; the first KAN convolution applies it.
        degree: Degree of the first KAN convolution (on ``mid_channels``).
        out_degree: Degree of the second KAN convolution (on ``out_channels``, stride 1), or
            None for no second KAN convolution. The paper uses it on the network's last stage.
        basis: Basis of the KAN convolutions, ``'chebyshev'`` or ``'rbf'``.
        aggregation: How the branch output ``r`` joins the stage output ``out``:
            ``'addition'`` (``out + r``, every result of the paper), ``'gating'``
            (``out * g + r * (1 - g)`` with ``g = sigmoid(Conv1x1(r))``) or ``'se'``
            (``out + r * SE(r)``).
        norm_cfg: Config of the two normalisation layers.
        init_cfg: Initialisation applied by ``init_weights``. None (the default) keeps the
            authors' initialisation, which the constructor already sets and ``init_weights``
            leaves alone: PyTorch's default ``nn.Conv2d`` init for the 1x1 convolutions
            (kaiming-uniform with a = sqrt(5): weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std
            1/sqrt(3 fan_in); biases, where there are any, on the same interval), weight 1 and
            bias 0 for the norms, and the KAN convolutions' own init (``docs/models.md``).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 mid_channels: int,
                 stride: int = 1,
                 degree: int = 3,
                 out_degree: Optional[int] = 2,
                 basis: str = 'chebyshev',
                 aggregation: str = 'addition',
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if aggregation not in RKAN_AGGREGATIONS:
            raise ValueError(
                f'aggregation={aggregation!r} is not supported; allowed: {RKAN_AGGREGATIONS}')
        if basis not in RKAN_BASES:
            raise ValueError(f'basis={basis!r} is not supported; allowed: {RKAN_BASES}')
        self.aggregation = aggregation

        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.act = nn.SiLU()
        self.kan1 = KANConv2d(degree=degree, stride=stride, basis=basis)
        self.norm1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.kan2 = (None if out_degree is None else
                     KANConv2d(degree=out_degree, stride=1, basis=basis))
        self.norm2 = build_norm_layer(norm_cfg, out_channels)[1]
        if aggregation == 'gating':
            self.gate = nn.Conv2d(out_channels, out_channels, 1)
        elif aggregation == 'se':
            self.se = SELayer(out_channels)

    def residual(self, stage_in: Tensor) -> Tensor:
        """The branch output ``r`` for the stage input."""
        r = self.norm1(self.kan1(self.act(self.conv1(stage_in))))
        r = self.act(self.conv2(r))
        if self.kan2 is not None:
            r = self.kan2(r)
        return self.norm2(r)

    def forward(self, stage_in: Tensor, stage_out: Tensor) -> Tensor:
        """The stage output with the branch aggregated into it."""
        r = self.residual(stage_in)
        if r.shape != stage_out.shape:
            raise RuntimeError(
                f'the RKAN branch gives {tuple(r.shape)} but its stage gives '
                f'{tuple(stage_out.shape)} for the input {tuple(stage_in.shape)}; the stage '
                'rounds odd sizes differently from a 3x3 convolution with padding 1: use input '
                'sizes divisible by the backbone\'s output stride')
        if self.aggregation == 'addition':
            return stage_out + r
        if self.aggregation == 'gating':
            gate = torch.sigmoid(self.gate(r))
            return stage_out * gate + r * (1 - gate)
        return stage_out + self.se(r)
