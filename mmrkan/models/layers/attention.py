"""Attention plug-ins of the ResNet family: SE, ECA, CBAM, shuffle attention, SimAM and ELA.

Each module maps a feature map ``(N, C, H, W)`` to a re-weighted map of the same shape and takes
``in_channels`` as its first argument, so that OpenMMLab's plug-in mechanism inserts it into the
bottlenecks of mmdet's and mmseg's ``ResNet`` (and ``ResNeXt``, ``ResNetV1c``/``V1d``)::

    backbone=dict(
        type='mmdet.ResNet', depth=50,
        plugins=[dict(cfg=dict(type='EfficientChannelAttention'),
                      stages=(True, True, True, True), position='after_conv3')])

mmcv's ``build_plugin_layer`` builds one module per block, with ``in_channels`` the channels at
that position, and names it after the class's ``_abbr_`` (``layer1.0.eca``). The plug-in type is
looked up in the registry of the default scope (every config sets one; mmrkan registers these
modules in mmdet, mmseg and mmpretrain). ``after_conv3`` (after the block's last norm, before the
residual addition) is where the SE, ECA, CBAM and SA-Net papers, and the RKAN authors for all six
modules, put them. A block's plug-in replaces the block's feature map by the plug-in's output.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrkan.registry import register_model


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'{name}={value!r} must be a positive integer')


def _check_odd_kernel(name: str, value: int) -> None:
    _check_positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f'{name}={value} must be odd (the padding keeps the size)')


@register_model()
class SqueezeExcitation(BaseModule):
    """Squeeze-and-excitation (Hu et al., CVPR 2018): ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``.

    The two 1x1 convolutions have no bias by default, as in the RKAN authors' SENet whose
    parameter count the RKAN paper prints (mmpretrain's ``SEResNet`` has biases: 16,048
    parameters more at depth 50). RegNetY builds it with biases and an explicit squeeze width.

    Args:
        in_channels: Channels of the input.
        ratio: Squeeze width ``in_channels // ratio``. Give ``None`` with ``squeeze_channels``.
        squeeze_channels: Explicit squeeze width, instead of ``ratio``.
        bias: Whether the two 1x1 convolutions have biases.
        init_cfg: Initialisation config.
    """
    _abbr_ = 'se'

    def __init__(self,
                 in_channels: int,
                 ratio: Optional[int] = 16,
                 squeeze_channels: Optional[int] = None,
                 bias: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_positive_int('in_channels', in_channels)
        if (ratio is None) == (squeeze_channels is None):
            raise ValueError(f'give one of ratio={ratio!r} and squeeze_channels='
                             f'{squeeze_channels!r}, the other None')
        if squeeze_channels is None:
            _check_positive_int('ratio', ratio)
            squeeze_channels = in_channels // ratio
            if squeeze_channels < 1:
                raise ValueError(f'ratio={ratio} leaves no squeeze channel of in_channels='
                                 f'{in_channels}; allowed: ratio <= in_channels')
        _check_positive_int('squeeze_channels', squeeze_channels)
        self.fc1 = nn.Conv2d(in_channels, squeeze_channels, 1, bias=bias)
        self.fc2 = nn.Conv2d(squeeze_channels, in_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


@register_model()
class EfficientChannelAttention(BaseModule):
    """ECA (Wang et al., CVPR 2020): a 1D convolution across the pooled channels, no reduction.

    ``x * sigmoid(conv1d_k(avgpool(x)))``, one ``k``-tap kernel (no bias) shared by all channels.

    Args:
        in_channels: Channels of the input.
        kernel_size: Odd ``k``. ``None`` (default) takes the paper's adaptive size
            ``t = int(|(log2(C) + b) / gamma|)``, ``k = t`` if odd else ``t + 1``, with
            ``gamma = 2``, ``b = 1`` (as the RKAN authors' ECA-Net): 5 for 256, 512, 1024
            channels, 7 for 2048. The ECA authors' ResNet code uses ``k = 3`` everywhere.
        init_cfg: Initialisation config.
    """
    _abbr_ = 'eca'

    def __init__(self,
                 in_channels: int,
                 kernel_size: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_positive_int('in_channels', in_channels)
        if kernel_size is None:
            t = int(abs((math.log2(in_channels) + 1) / 2))
            kernel_size = t if t % 2 else t + 1
        _check_odd_kernel('kernel_size', kernel_size)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean((2, 3)).unsqueeze(1)  # (N, 1, C): the convolution runs across channels
        weights = torch.sigmoid(self.conv(pooled)).squeeze(1)
        return x * weights[:, :, None, None]


@register_model()
class CBAM(BaseModule):
    """CBAM (Woo et al., ECCV 2018): channel attention, then spatial attention.

    ``x = x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))`` with a shared bias-free MLP of two 1x1
    convolutions (``C -> C / ratio -> C``, ReLU between), then
    ``x * sigmoid(conv_kxk([mean_c(x), max_c(x)]))`` with one bias-free ``k x k`` convolution.
    This is the paper's equations and the RKAN authors' module (CBAM-50: 28.07M); the CBAM
    authors' code adds MLP biases and a BatchNorm after the spatial convolution (28.09M).

    Args:
        in_channels: Channels of the input.
        ratio: Reduction ratio of the channel MLP.
        kernel_size: Odd size of the spatial convolution.
        init_cfg: Initialisation config.
    """
    _abbr_ = 'cbam'

    def __init__(self,
                 in_channels: int,
                 ratio: int = 16,
                 kernel_size: int = 7,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_positive_int('in_channels', in_channels)
        _check_positive_int('ratio', ratio)
        _check_odd_kernel('kernel_size', kernel_size)
        if in_channels < ratio:
            raise ValueError(f'ratio={ratio} leaves no hidden channel of in_channels='
                             f'{in_channels}; allowed: ratio <= in_channels')
        self.channel_fc1 = nn.Conv2d(in_channels, in_channels // ratio, 1, bias=False)
        self.channel_fc2 = nn.Conv2d(in_channels // ratio, in_channels, 1, bias=False)
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def _channel_mlp(self, pooled: Tensor) -> Tensor:
        return self.channel_fc2(F.relu(self.channel_fc1(pooled)))

    def forward(self, x: Tensor) -> Tensor:
        channel = self._channel_mlp(x.mean((2, 3), keepdim=True)) + self._channel_mlp(
            x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(channel)
        spatial = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial_conv(spatial))


@register_model()
class ShuffleAttention(BaseModule):
    """Shuffle attention, SA-Net (Zhang and Yang, ICASSP 2021).

    The channels are split into ``groups`` sub-features, each halved: one half gets a channel
    gate ``sigmoid(cweight * avgpool + cbias)``, the other a spatial gate
    ``sigmoid(sweight * GN(x) + sbias)`` (GroupNorm with one channel per group); the halves are
    concatenated and the channels shuffled across the two halves. ``3 C / groups`` parameters.
    The parameter names are those of the SA-Net authors' ``sa_layer`` (their ResNet names the
    module ``sa`` as this one is named in a block), so their weights load as they are.

    Args:
        in_channels: Channels of the input, a multiple of ``2 * groups``.
        groups: Number of sub-features (64 in SA-Net's ResNets).
        init_cfg: Initialisation config.
    """
    _abbr_ = 'sa'

    def __init__(self,
                 in_channels: int,
                 groups: int = 64,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_positive_int('in_channels', in_channels)
        _check_positive_int('groups', groups)
        if in_channels % (2 * groups):
            raise ValueError(f'in_channels={in_channels} must be a multiple of 2 * groups = '
                             f'{2 * groups} (groups={groups})')
        self.groups = groups
        half = in_channels // (2 * groups)
        # SA-Net's initial values: both gates start at sigmoid(1) for every input.
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        x_channel, x_spatial = x.reshape(n * self.groups, c // self.groups, h,
                                         w).chunk(2, dim=1)
        x_channel = x_channel * torch.sigmoid(
            self.cweight * x_channel.mean((2, 3), keepdim=True) + self.cbias)
        x_spatial = x_spatial * torch.sigmoid(self.sweight * self.gn(x_spatial) + self.sbias)
        out = torch.cat([x_channel, x_spatial], dim=1).reshape(n, c, h, w)
        # Channel shuffle with 2 groups: interleave the two halves of the channels.
        return out.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


@register_model()
class SimAM(BaseModule):
    """SimAM (Yang et al., ICML 2021): parameter-free attention from an energy function.

    ``x * sigmoid(d / (4 (v + lambda)) + 0.5)`` with ``d = (x - mean_hw(x))^2`` and
    ``v = sum_hw(d) / (H W - 1)``, per sample and channel.

    The SimAM authors insert it after the 3x3 convolution of a bottleneck (before its norm), a
    position OpenMMLab's plug-ins do not offer; the RKAN authors' SimAM-ResNet puts it after the
    last norm (``position='after_conv3'``), like the other modules here.

    Args:
        in_channels: Unused (SimAM has no parameters); accepted because the plug-in mechanism
            passes it.
        e_lambda: The regulariser ``lambda`` (1e-4 in the RKAN authors' code and SimAM's CIFAR
            runs, 0.1 in SimAM's ImageNet runs).
        init_cfg: Initialisation config.
    """
    _abbr_ = 'simam'

    def __init__(self,
                 in_channels: Optional[int] = None,
                 e_lambda: float = 1e-4,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels is not None:
            _check_positive_int('in_channels', in_channels)
        if not isinstance(e_lambda, (int, float)) or e_lambda <= 0:
            raise ValueError(f'e_lambda={e_lambda!r} must be a positive number')
        self.e_lambda = float(e_lambda)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        if h * w < 2:
            raise ValueError(f'SimAM needs at least 2 spatial positions (its variance divides by '
                             f'H*W - 1), got a {h}x{w} feature map')
        squared = (x - x.mean((2, 3), keepdim=True)).pow(2)
        variance = squared.sum((2, 3), keepdim=True) / (h * w - 1)
        return x * torch.sigmoid(squared / (4 * (variance + self.e_lambda)) + 0.5)


# ELA variants of the ELA paper: (kernel size, channels per group of the 1D convolution, groups
# of the GroupNorm).
ELA_ARCHS = {
    'T': (5, 1, 32),
    'B': (7, 1, 16),
    'S': (5, 8, 16),
    'L': (7, 8, 16),
}


@register_model()
class EfficientLocalAttention(BaseModule):
    """ELA (Xu and Wan, 2024): coordinate attention with 1D convolutions and GroupNorm.

    The map is averaged along W and along H (``(N, C, H)`` and ``(N, C, W)``); one bias-free
    grouped 1D convolution and one GroupNorm, shared by both directions, and a sigmoid give
    ``a_h`` and ``a_w``; the output is ``x * a_h * a_w``. Parameters: ``C * (C / conv_groups) * k``
    for the convolution plus ``2 C`` for the GroupNorm.

    Args:
        in_channels: Channels of the input (a multiple of the GroupNorm groups and of the
            channels per convolution group).
        arch: The paper's variant: ``'T'`` (k 5, depthwise, GN 32), ``'B'`` (k 7, depthwise,
            GN 16), ``'S'`` (k 5, 8 channels per group, GN 16) or ``'L'`` (k 7, 8 channels per
            group, GN 16; the RKAN paper's ELA-L).
        init_cfg: Initialisation config.
    """
    _abbr_ = 'ela'

    def __init__(self,
                 in_channels: int,
                 arch: str = 'L',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_positive_int('in_channels', in_channels)
        if arch not in ELA_ARCHS:
            raise ValueError(f'arch={arch!r} is not an ELA variant; allowed: {sorted(ELA_ARCHS)}')
        kernel_size, channels_per_group, norm_groups = ELA_ARCHS[arch]
        if in_channels % channels_per_group or in_channels % norm_groups:
            raise ValueError(
                f'in_channels={in_channels} must be a multiple of {channels_per_group} (channels '
                f'per convolution group) and of {norm_groups} (GroupNorm groups) for ELA-{arch}')
        self.conv = nn.Conv1d(
            in_channels,
            in_channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=in_channels // channels_per_group,
            bias=False)
        self.gn = nn.GroupNorm(norm_groups, in_channels)

    def _attention(self, pooled: Tensor) -> Tensor:
        return torch.sigmoid(self.gn(self.conv(pooled)))

    def forward(self, x: Tensor) -> Tensor:
        along_h = self._attention(x.mean(3)).unsqueeze(3)  # (N, C, H, 1)
        along_w = self._attention(x.mean(2)).unsqueeze(2)  # (N, C, 1, W)
        return x * along_h * along_w
