"""PyramidNet (Han, Kim and Kim, CVPR 2017): widths that grow by the same step at every block.

Pre-activation residual blocks (BN first, no ReLU after the addition) whose output width grows
linearly, by ``alpha / number of blocks`` per block, from the stem width to ``stem width +
alpha`` (times 4 for bottlenecks); the shortcut is the identity (average-pooled at stride 2)
zero-padded to the wider output. The network ends with BN and ReLU. Both layouts of the
PyramidNet authors' code: the ImageNet one (7x7 stem, max pooling, four stages of ResNet
depths) and the CIFAR one (3x3 stem of 16 channels, three stages of ``n`` blocks).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, Sequential
from torch import Tensor, nn

from mmrkan.registry import register_model
from .staged_cnn import StagedCNN

# Block type and blocks per stage of the ImageNet layout, by depth (the PyramidNet authors').
IMAGENET_STAGE_BLOCKS: Dict[int, Tuple[str, Tuple[int, ...]]] = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
    200: ('bottleneck', (3, 24, 36, 3)),
}
# Layers per block (for the CIFAR depth 2 + layers * n) and output expansion.
_BLOCK_LAYERS = {'basic': 2, 'bottleneck': 3}
LAYOUTS = ('imagenet', 'cifar')


class PyramidBlock(BaseModule):
    """A PyramidNet residual block, pre-activation and without a final ReLU.

    basic: BN, 3x3 conv (stride), BN, ReLU, 3x3 conv, BN (``out_channels = planes``).
    bottleneck: BN, 1x1 conv, BN, ReLU, 3x3 conv (stride), BN, ReLU, 1x1 conv, BN
    (``out_channels = 4 planes``). Then ``+ pad(shortcut(x))``: the input, 2x2 average-pooled
    when the block has stride 2, zero-padded with channels up to the output's.
    """

    def __init__(self,
                 block_type: str,
                 in_channels: int,
                 planes: int,
                 stride: int,
                 conv_cfg: Optional[dict],
                 norm_cfg: dict,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.block_type = block_type
        if block_type == 'basic':
            convs = [(in_channels, planes, 3, stride), (planes, planes, 3, 1)]
        else:
            convs = [(in_channels, planes, 1, 1), (planes, planes, 3, stride),
                     (planes, planes * 4, 1, 1)]
        self.out_channels = convs[-1][1]
        self.norm_names = []
        for index, (conv_in, conv_out, kernel, conv_stride) in enumerate(convs, start=1):
            norm_name, norm = build_norm_layer(norm_cfg, conv_in, postfix=index)
            self.add_module(norm_name, norm)
            self.norm_names.append(norm_name)
            self.add_module(
                f'conv{index}',
                build_conv_layer(conv_cfg, conv_in, conv_out, kernel, stride=conv_stride,
                                 padding=kernel // 2, bias=False))
        norm_name, norm = build_norm_layer(norm_cfg, self.out_channels, postfix=len(convs) + 1)
        self.add_module(norm_name, norm)
        self.norm_names.append(norm_name)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.AvgPool2d(2, stride=2, ceil_mode=True) if stride != 1 else None)

    def forward(self, x: Tensor) -> Tensor:
        num_convs = len(self.norm_names) - 1
        out = getattr(self, self.norm_names[0])(x)
        for index in range(1, num_convs + 1):
            out = getattr(self, f'conv{index}')(out)
            out = getattr(self, self.norm_names[index])(out)
            if index < num_convs:
                out = self.relu(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        # The output is never narrower than the input: the widths only grow.
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, out.shape[1] - shortcut.shape[1]))
        return out + shortcut


@register_model()
class PyramidNet(StagedCNN):
    """PyramidNet backbone in the layout of mmdet's ResNet (``res_layers``, ``out_indices``, ...).

    The block ``i`` (1-based, over the whole network of ``N`` blocks) has
    ``round(stem_width + i * alpha / N)`` planes (times 4 output channels for bottlenecks);
    the final BN and ReLU follow the last stage (its output in ``out_indices`` is taken after
    them; the other stage outputs are the pre-activation sums). An RKAN branch on the last
    stage is added before the final BN, as in the RKAN authors' PyramidNet.

    The RKAN paper's PyramidNet-101 (CIFAR-100, 26.59M parameters) is the ImageNet layout
    with depth 101 and ``alpha=270`` (the RKAN authors' code), not a CIFAR-layout network.

    Args:
        depth: ImageNet layout: 18, 34 (basic blocks), 50, 101, 152 or 200 (bottlenecks).
            CIFAR layout: ``6 n + 2`` with basic blocks or ``9 n + 2`` with bottlenecks
            (``n`` blocks per stage).
        alpha: Total widening ``alpha`` (the planes grow from the stem width to
            ``stem width + alpha``).
        layout: ``'imagenet'`` (7x7 stride-2 convolution with 64 channels, BN, ReLU, 3x3
            max pooling; four stages with strides 1, 2, 2, 2) or ``'cifar'`` (3x3 convolution
            with 16 channels and BN; three stages with strides 1, 2, 2).
        block_type: ``'basic'`` or ``'bottleneck'``; needed by the CIFAR layout, given by the
            depth in the ImageNet layout (``None``).
        in_channels: Channels of the input image.
        out_indices: Stages whose outputs are returned (0-based, negative from the end);
            defaults to the last stage.
        frozen_stages: Freeze the stem and the first ``frozen_stages`` stages; -1: none.
        conv_cfg: Config of the convolutions (``None``: ``nn.Conv2d``).
        norm_cfg: Config of the norms.
        norm_eval: Keep every BatchNorm in eval mode (frozen statistics) in training.
        init_cfg: Initialisation; defaults to the PyramidNet authors' (Kaiming-normal fan-out
            convolutions, norms at weight 1 and bias 0).
    """

    def __init__(self,
                 depth: int = 101,
                 alpha: float = 270,
                 layout: str = 'imagenet',
                 block_type: Optional[str] = None,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (-1, ),
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
        block_type, stage_blocks = self._stage_blocks(depth, layout, block_type)
        if not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f'alpha={alpha!r} must be a non-negative number (the widening)')
        super().__init__(len(stage_blocks), out_indices, frozen_stages, norm_eval, init_cfg)
        self.layout = layout
        self.block_type = block_type

        stem_width = 64 if layout == 'imagenet' else 16
        if layout == 'imagenet':
            self.conv1 = build_conv_layer(
                conv_cfg, in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            strides = (1, 2, 2, 2)
        else:
            self.conv1 = build_conv_layer(
                conv_cfg, in_channels, stem_width, 3, stride=1, padding=1, bias=False)
            strides = (1, 2, 2)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, stem_width, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if layout == 'imagenet' else None

        width_step = alpha / sum(stage_blocks)
        width = float(stem_width)
        channels = stem_width
        for index, (num_blocks, stride) in enumerate(zip(stage_blocks, strides)):
            blocks = []
            for block in range(num_blocks):
                width += width_step
                blocks.append(
                    PyramidBlock(block_type, channels, int(round(width)),
                                 stride if block == 0 else 1, conv_cfg, norm_cfg))
                channels = blocks[-1].out_channels
            name = f'layer{index + 1}'
            self.add_module(name, Sequential(*blocks))
            self.res_layers.append(name)
        self.out_channels = channels
        self.final_norm_name, final_norm = build_norm_layer(norm_cfg, channels, postfix='_final')
        self.add_module(self.final_norm_name, final_norm)
        self._freeze_stages()

    @staticmethod
    def _stage_blocks(depth: int, layout: str,
                      block_type: Optional[str]) -> Tuple[str, Tuple[int, ...]]:
        if layout not in LAYOUTS:
            raise ValueError(f'layout={layout!r} is not supported; allowed: {LAYOUTS}')
        if layout == 'imagenet':
            if depth not in IMAGENET_STAGE_BLOCKS:
                raise ValueError(f'depth={depth!r} is not a depth of the ImageNet layout; '
                                 f'allowed: {sorted(IMAGENET_STAGE_BLOCKS)}')
            depth_block_type, stage_blocks = IMAGENET_STAGE_BLOCKS[depth]
            if block_type not in (None, depth_block_type):
                raise ValueError(f'block_type={block_type!r}: the ImageNet layout of depth '
                                 f'{depth} has {depth_block_type} blocks; give None')
            return depth_block_type, stage_blocks
        if block_type not in _BLOCK_LAYERS:
            raise ValueError(f'block_type={block_type!r}: the CIFAR layout needs one of '
                             f'{tuple(_BLOCK_LAYERS)}')
        layers = _BLOCK_LAYERS[block_type]
        if not isinstance(depth, int) or depth < 2 + 3 * layers or (depth - 2) % (3 * layers):
            raise ValueError(f'depth={depth!r} does not fit the CIFAR layout with {block_type} '
                             f'blocks: it must be {3 * layers} n + 2 with n >= 1')
        return block_type, ((depth - 2) // (3 * layers), ) * 3

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def final_norm(self) -> nn.Module:
        return getattr(self, self.final_norm_name)

    def stem_modules(self) -> List[nn.Module]:
        return [self.conv1, self.norm1]

    def frozen_modules(self) -> List[nn.Module]:
        """The stem and the first stages; the final norm with the last stage."""
        modules = super().frozen_modules()
        if self.frozen_stages == len(self.res_layers):
            modules.append(self.final_norm)
        return modules

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.norm1(self.conv1(x))
        if self.maxpool is not None:
            x = self.maxpool(self.relu(x))
        outs = []
        last = len(self.res_layers) - 1
        for index, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if index == last:
                x = self.relu(self.final_norm(x))
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)
