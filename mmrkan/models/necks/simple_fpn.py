"""The simple feature pyramid of ViTDet (Li et al., arXiv 2203.16527), for KATDet."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from mmrkan.registry import register_model
from ..layers.norm import LayerNorm2d  # noqa: F401  (registers 'LN2d' for the default norm_cfg)

SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)


@register_model()
class SimpleFeaturePyramid(BaseModule):
    """Multi-scale maps from the single stride-16 map of a plain ViT backbone.

    Each scale is made from the LAST backbone output: 4x by two 2x2 stride-2 transposed convs
    (with LN2d + GELU between them), 2x by one, 1x as is, 0.5x by 2x2 max pooling. Each level
    then gets a 1x1 lateral conv and a 3x3 output conv, both normalised (LN2d, no bias). Levels
    beyond the scale factors (``num_outs``) are stride-2 subsamplings of the last one, as
    mmdet's FPN does for Mask R-CNN's P6.

    Args:
        in_channels: channels of the backbone map.
        out_channels: channels of every output level.
        scale_factors: scales to build, a decreasing subset of ``(4, 2, 1, 0.5)``.
        num_outs: number of outputs, at least ``len(scale_factors)``.
        norm_cfg: normalisation after the upsampling and in the convs.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = SCALE_FACTORS,
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        scale_factors = tuple(float(scale) for scale in scale_factors)
        if not scale_factors or any(s not in SCALE_FACTORS for s in scale_factors) or \
                list(scale_factors) != sorted(set(scale_factors), reverse=True):
            raise ValueError(f'scale_factors={scale_factors} must be a decreasing subset of '
                             f'{SCALE_FACTORS}')
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} must be >= len(scale_factors)='
                             f'{len(scale_factors)}')
        if 4.0 in scale_factors and in_channels % 4 != 0:
            raise ValueError(f'in_channels={in_channels} must be divisible by 4 for the 4x scale')
        self.num_outs = num_outs

        self.rescales = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for scale in scale_factors:
            rescale, channels = self._build_rescale(scale, in_channels, norm_cfg)
            self.rescales.append(rescale)
            self.lateral_convs.append(
                ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None))
            self.output_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                           act_cfg=None))

    @staticmethod
    def _build_rescale(scale: float, channels: int, norm_cfg: dict) -> Tuple[nn.Module, int]:
        """The resampling of one scale and its output channels."""
        if scale == 4.0:
            return nn.Sequential(
                nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2),
                build_norm_layer(norm_cfg, channels // 2)[1],
                nn.GELU(),
                nn.ConvTranspose2d(channels // 2, channels // 4, kernel_size=2, stride=2),
            ), channels // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2), \
                channels // 2
        if scale == 1.0:
            return nn.Identity(), channels
        return nn.MaxPool2d(kernel_size=2, stride=2), channels

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple:
        """``inputs``: the backbone outputs; the last one, ``(B, in_channels, H, W)``, is used."""
        x = inputs[-1]
        outs = [
            output_conv(lateral_conv(rescale(x))) for rescale, lateral_conv, output_conv in zip(
                self.rescales, self.lateral_convs, self.output_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
