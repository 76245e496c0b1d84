"""RegNetY (Radosavovic et al., CVPR 2020): RegNetX bottlenecks with squeeze-and-excitation.

OpenMMLab has RegNetX only. This backbone builds the RegNetY models of torchvision
(``torchvision.models.regnet_y_*``) layer for layer, with the conventions of mmdet's ResNet
family (``res_layers``, ``out_indices``, ``frozen_stages``, ``norm_eval``), so the RKAN wrapper
finds its stages.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, Sequential
from torch import Tensor, nn

from mmrkan.models.layers.attention import SqueezeExcitation
from mmrkan.registry import register_model
from .staged_cnn import StagedCNN

# The RegNetY design-space parameters of torchvision's regnet_y_* (the RegNet paper's models):
# depth d, initial width w0, slope wa, width multiplier wm, group width; SE ratio 0.25 of the
# block input width, bottleneck ratio 1.
REGNETY_ARCHS: Dict[str, dict] = {
    'regnety_400mf': dict(depth=16, w0=48, wa=27.89, wm=2.09, group_width=8),
    'regnety_800mf': dict(depth=14, w0=56, wa=38.84, wm=2.4, group_width=16),
    'regnety_1.6gf': dict(depth=27, w0=48, wa=20.71, wm=2.65, group_width=24),
    'regnety_3.2gf': dict(depth=21, w0=80, wa=42.63, wm=2.66, group_width=24),
    'regnety_8gf': dict(depth=17, w0=192, wa=76.82, wm=2.19, group_width=56),
    'regnety_16gf': dict(depth=18, w0=200, wa=106.23, wm=2.48, group_width=112),
    'regnety_32gf': dict(depth=20, w0=232, wa=115.89, wm=2.53, group_width=232),
    'regnety_128gf': dict(depth=27, w0=456, wa=160.83, wm=2.52, group_width=264),
}
_ARCH_KEYS = {'depth', 'w0', 'wa', 'wm', 'group_width'}
_OPTIONAL_ARCH_KEYS = {'se_ratio', 'bottleneck_ratio'}


def _make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def regnet_stage_settings(depth: int,
                          w0: int,
                          wa: float,
                          wm: float,
                          group_width: int,
                          bottleneck_ratio: float = 1.0) -> List[Tuple[int, int, int]]:
    """``(width, depth, group width)`` of each stage of a RegNet, as torchvision computes them.

    Block ``j`` gets the continuous width ``w0 + wa * j``, quantised in log space to
    ``w0 * wm ** round(log(width / w0) / log(wm))`` and rounded to a multiple of 8; consecutive
    blocks of one width form a stage. The bottleneck width ``width * bottleneck_ratio`` is then
    made a multiple of the group width (the group width is capped by it).
    """
    if not isinstance(depth, int) or depth < 1 or wa < 0 or w0 <= 0 or wm <= 1 or w0 % 8:
        raise ValueError(f'invalid RegNet settings depth={depth}, w0={w0}, wa={wa}, wm={wm}: '
                         'need a positive integer depth, wa >= 0, w0 > 0 a multiple of 8, wm > 1')
    block_widths = []
    for index in range(depth):
        capacity = round(math.log((w0 + wa * index) / w0) / math.log(wm))
        block_widths.append(int(round(w0 * wm**capacity / 8)) * 8)
    stages: List[List[int]] = []
    for width in block_widths:
        if stages and stages[-1][0] == width:
            stages[-1][1] += 1
        else:
            stages.append([width, 1])
    settings = []
    for width, stage_depth in stages:
        bottleneck = int(width * bottleneck_ratio)
        stage_group_width = min(group_width, bottleneck)
        bottleneck = _make_divisible(bottleneck, stage_group_width)
        settings.append((int(bottleneck / bottleneck_ratio), stage_depth, stage_group_width))
    return settings


class RegNetYBlock(BaseModule):
    """RegNetY residual bottleneck: 1x1, grouped 3x3 (stride), SE, 1x1, plus the shortcut.

    The SE squeeze width is ``round(se_ratio * in_channels)`` of the block's input width, its
    1x1 convolutions have biases, as in torchvision and the RegNet paper.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 group_width: int,
                 bottleneck_ratio: float,
                 se_ratio: float,
                 conv_cfg: Optional[dict],
                 norm_cfg: dict,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        mid_channels = int(round(out_channels * bottleneck_ratio))
        self.conv1 = build_conv_layer(conv_cfg, in_channels, mid_channels, 1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, mid_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(
            conv_cfg,
            mid_channels,
            mid_channels,
            3,
            stride=stride,
            padding=1,
            groups=mid_channels // group_width,
            bias=False)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, mid_channels, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.se = SqueezeExcitation(
            mid_channels,
            ratio=None,
            squeeze_channels=int(round(se_ratio * in_channels)),
            bias=True)
        self.conv3 = build_conv_layer(conv_cfg, mid_channels, out_channels, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = Sequential(
                build_conv_layer(conv_cfg, in_channels, out_channels, 1, stride=stride,
                                 bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(self.se(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


@register_model()
class RegNetY(StagedCNN):
    """RegNetY backbone, torchvision's ``regnet_y_*`` models in the layout of mmdet's ResNet.

    Stem: 3x3 convolution (stride 2, ``stem_channels``), norm, ReLU. Then four stages
    ``layer1``..``layer4`` (listed in ``res_layers``) of :class:`RegNetYBlock`, each opening
    with stride 2. The widths follow the RegNet formula (see :func:`regnet_stage_settings`);
    ``regnety_3.2gf`` has stages of 72, 216, 576 and 1512 channels. With a linear head on
    ImageNet the parameter count is torchvision's: 6,432,512 (800MF), 19,436,338 (3.2GF),
    39,381,472 (8GF), 145,046,770 (32GF).

    Args:
        arch: A key of ``REGNETY_ARCHS`` (``'regnety_400mf'``, ``'regnety_800mf'``,
            ``'regnety_1.6gf'``, ``'regnety_3.2gf'``, ``'regnety_8gf'``, ``'regnety_16gf'``,
            ``'regnety_32gf'``, ``'regnety_128gf'``), or a dict with ``depth``, ``w0``, ``wa``,
            ``wm``, ``group_width`` and optionally ``se_ratio`` (0.25) and ``bottleneck_ratio``
            (1.0).
        in_channels: Channels of the input image.
        stem_channels: Output channels of the stem (32 in every RegNet).
        out_indices: Stages whose outputs are returned (0-based).
        frozen_stages: Freeze the stem and the first ``frozen_stages`` stages (their parameters
            get no gradient, their norms stay in eval mode); -1 freezes nothing.
        conv_cfg: Config of the convolutions (``None``: ``nn.Conv2d``).
        norm_cfg: Config of the norms.
        norm_eval: Keep every BatchNorm in eval mode (frozen statistics) in training.
        init_cfg: Initialisation; defaults to torchvision's (Kaiming-normal fan-out for the
            convolutions, norms at weight 1 and bias 0; the SE biases start at 0).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'regnety_3.2gf',
                 in_channels: int = 3,
                 stem_channels: int = 32,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu',
                     distribution='normal'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
            ]
        arch = self._arch_settings(arch)
        stage_settings = regnet_stage_settings(
            arch['depth'], arch['w0'], arch['wa'], arch['wm'], arch['group_width'],
            arch.get('bottleneck_ratio', 1.0))
        super().__init__(len(stage_settings), out_indices, frozen_stages, norm_eval, init_cfg)
        self.stage_widths = [width for width, _, _ in stage_settings]

        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, stem_channels, 3, stride=2, padding=1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)

        width_in = stem_channels
        for index, (width, stage_depth, group_width) in enumerate(stage_settings):
            blocks = [
                RegNetYBlock(
                    width_in if block == 0 else width,
                    width,
                    stride=2 if block == 0 else 1,
                    group_width=group_width,
                    bottleneck_ratio=arch.get('bottleneck_ratio', 1.0),
                    se_ratio=arch.get('se_ratio', 0.25),
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg) for block in range(stage_depth)
            ]
            name = f'layer{index + 1}'
            self.add_module(name, Sequential(*blocks))
            self.res_layers.append(name)
            width_in = width
        self._freeze_stages()

    @staticmethod
    def _arch_settings(arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch not in REGNETY_ARCHS:
                raise ValueError(f'arch={arch!r} is not a RegNetY; allowed: '
                                 f'{sorted(REGNETY_ARCHS)} or a dict of {sorted(_ARCH_KEYS)}')
            return dict(REGNETY_ARCHS[arch])
        if not isinstance(arch, dict) or not _ARCH_KEYS <= set(arch) or set(arch) - (
                _ARCH_KEYS | _OPTIONAL_ARCH_KEYS):
            raise ValueError(f'arch={arch!r} must be a name of {sorted(REGNETY_ARCHS)} or a dict '
                             f'with keys {sorted(_ARCH_KEYS)} and optionally '
                             f'{sorted(_OPTIONAL_ARCH_KEYS)}')
        return dict(arch)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.relu(self.norm1(self.conv1(x)))
        outs = []
        for index, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def stem_modules(self) -> List[nn.Module]:
        return [self.conv1, self.norm1]
