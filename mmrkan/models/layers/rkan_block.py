"""The RKAN branch: a residual KAN block attached beside one stage of a CNN.

RKAN (arXiv 2410.05500) adds, to the output of a CNN stage, a light branch computed from the
stage's input (``docs/models.md``, "The RKAN block")::

    r = Conv1x1(C_in -> C_mid) -> SiLU -> KANConv(kan_cfg, stride of the stage) -> BN(C_mid)
        -> Conv1x1(C_mid -> C_out) -> SiLU -> [KANConv(out_kan_cfg, stride 1)] -> BN(C_out)
        [+ BN(Conv1x1(C_in -> C_out, stride of the stage))]     (shortcut=True)
    out = aggregate(stage_out, r)
"""
import inspect
from typing import List, Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrkan.ops import KANConv2d
from mmrkan.registry import register_model
from .attention import SqueezeExcitation

RKAN_AGGREGATIONS = ('addition', 'gating', 'se')
# Settings of a KAN convolution of the branch: KANConv2d's arguments; the stride is the block's.
KAN_CONV_SETTINGS = tuple(name for name in inspect.signature(KANConv2d).parameters
                          if name != 'stride')


def check_kan_cfg(name: str, cfg: dict, allowed: Sequence[str] = KAN_CONV_SETTINGS) -> None:
    """A KAN convolution config is a dict of :class:`KANConv2d` arguments (``allowed``; never the
    stride, the stage's): a ValueError names the setting ``name``, the key and what is
    allowed."""
    if not isinstance(cfg, dict):
        raise ValueError(f'{name}={cfg!r} must be a dict of KANConv2d arguments')
    unknown = [key for key in cfg if key not in allowed]
    if unknown:
        raise ValueError(f'{name} has {unknown[0]!r}={cfg[unknown[0]]!r}, not a setting it '
                         f"takes; allowed: {tuple(allowed)} (the stride is the stage's)")


class ParallelKANConv2d(nn.ModuleList):
    """Several KAN convolutions of one input, their outputs concatenated along the channels,
    convolution by convolution (the authors' ``n_convs``): ``C`` channels in, ``n C`` out."""

    def __init__(self, num_convs: int, **kan_cfg) -> None:
        super().__init__(KANConv2d(**kan_cfg) for _ in range(num_convs))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(x) for conv in self], dim=1)


@register_model()
class RKANBlock(BaseModule):
    """Residual KAN branch of one stage, with the aggregation into the stage output.

    Args:
        in_channels: Channels of the stage input.
        out_channels: Channels of the stage output.
        mid_channels: Width between the two 1x1 convolutions: ``in_channels / reduce_factor``
            for RKAN, ``in_channels * expansion`` for the inverse bottleneck of RKAN-L.
        stride: Spatial stride of the stage; the first KAN convolution (and the shortcut)
            applies it.
        kan_cfg: The first KAN convolution (on ``mid_channels``): :class:`~mmrkan.ops.KANConv2d`
            arguments but ``stride``, e.g. ``dict(basis='rbf', num_bumps=3)``. Default: the
            authors' Chebyshev of degree 3, tanh normalisation.
        out_kan_cfg: The second KAN convolution (on ``out_channels``, stride 1), or None for
            none (the paper uses it on the network's last stage only). Default: Chebyshev of
            degree 2.
        n_convs: Number of KAN convolutions in the first KAN layer (the authors' ``n_convs``):
            each reads the ``mid_channels`` maps and their outputs are concatenated, so the
            inner norm and the second 1x1 convolution see ``mid_channels * n_convs`` channels.
            The second KAN layer keeps one convolution (its output must have the stage's
            ``out_channels``).
        shortcut: Add ``BN(Conv1x1(stage input, stride))`` (``in_channels -> out_channels``,
            no bias) to ``r`` before the aggregation (the authors' ``shortcut``, off in their
            experiments).
        aggregation: How the branch output ``r`` joins the stage output ``out``:
            ``'addition'`` (``out + r``, every result of the paper), ``'gating'``
            (``out * g + r * (1 - g)`` with ``g = sigmoid(Conv1x1(r))``, with bias) or ``'se'``
            (``out + r * SE(r)``, the authors' SE: ratio 16, no biases).
        norm_cfg: Config of the normalisation layers.
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
                 kan_cfg: dict = dict(degree=3),
                 out_kan_cfg: Optional[dict] = dict(degree=2),
                 n_convs: int = 1,
                 shortcut: bool = False,
                 aggregation: str = 'addition',
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if aggregation not in RKAN_AGGREGATIONS:
            raise ValueError(
                f'aggregation={aggregation!r} is not supported; allowed: {RKAN_AGGREGATIONS}')
        check_kan_cfg('kan_cfg', kan_cfg)
        if out_kan_cfg is not None:
            check_kan_cfg('out_kan_cfg', out_kan_cfg)
        if not isinstance(n_convs, int) or isinstance(n_convs, bool) or n_convs < 1:
            raise ValueError(f'n_convs={n_convs!r} must be a positive integer')
        if not isinstance(shortcut, bool):
            raise ValueError(f'shortcut={shortcut!r} must be True or False')
        self.aggregation = aggregation

        kan_channels = mid_channels * n_convs
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.act = nn.SiLU()
        self.kan1 = (KANConv2d(stride=stride, **kan_cfg) if n_convs == 1 else
                     ParallelKANConv2d(n_convs, stride=stride, **kan_cfg))
        self.norm1 = build_norm_layer(norm_cfg, kan_channels)[1]
        self.conv2 = nn.Conv2d(kan_channels, out_channels, 1, bias=False)
        self.kan2 = None if out_kan_cfg is None else KANConv2d(stride=1, **out_kan_cfg)
        self.norm2 = build_norm_layer(norm_cfg, out_channels)[1]
        if shortcut:
            self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            self.shortcut_norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.with_shortcut = shortcut
        if aggregation == 'gating':
            self.gate = nn.Conv2d(out_channels, out_channels, 1)
        elif aggregation == 'se':
            self.se = SqueezeExcitation(out_channels, ratio=16)

    def residual(self, stage_in: Tensor) -> Tensor:
        """The branch output ``r`` for the stage input."""
        r = self.norm1(self.kan1(self.act(self.conv1(stage_in))))
        r = self.act(self.conv2(r))
        if self.kan2 is not None:
            r = self.kan2(r)
        r = self.norm2(r)
        if self.with_shortcut:
            r = r + self.shortcut_norm(self.shortcut_conv(stage_in))
        return r

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
