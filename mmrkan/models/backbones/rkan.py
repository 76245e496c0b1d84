"""RKAN: residual KAN branches plugged into any OpenMMLab CNN backbone, without touching its code.

The wrapped backbone is built from its own config and left as it is; forward hooks on its stage
modules add the branches: a pre-hook keeps the input of the stage, a forward hook returns
``branch(stage_input, stage_output)``. The wrapper therefore returns exactly the wrapped
backbone's outputs (``out_indices``), and the wrapped backbone's parameters keep their names
under ``backbone.``, so a plain ResNet checkpoint still loads into it.
"""
import functools
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule, ModuleDict
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmrkan.models.layers.rkan_block import RKAN_AGGREGATIONS, RKAN_BASES, RKANBlock
from mmrkan.registry import register_model
from .pretrained import pretrained_init_cfg

# Stage layouts of the OpenMMLab CNN backbones, as (entry, exit) attribute pairs: stage i runs
# from the input of ``entry[i]`` to the output of ``exit[i]``, the feature that out_indices
# index. Checked in order; ResNet-style backbones (``res_layers``) are handled before these.
_MODULE_LIST_LAYOUTS = (
    ('downsample_layers', 'stages'),  # ConvNeXt: the downsampling layer opens the stage
    ('stages', 'transitions'),  # DenseNet: the transition (pooling) closes the stage
    ('stages', 'stages'),
)
# Sides of the zero image that the shape probe at construction feeds to the wrapped backbone, in
# the order tried: the first at which it runs and the chosen stages give maps of at least
# _PROBE_MIN_MAP pixels a side (below that a stage's stride cannot be told; mmcv's deformable
# convolutions refuse maps smaller than their kernel).
_PROBE_SIZES = (64, 128, 256, 512)
_PROBE_MIN_MAP = 2


@register_model()
class RKAN(BaseModule):
    """Any OpenMMLab CNN backbone with RKAN residual KAN branches on chosen stages.

    Each augmented stage ``s`` becomes ``stage_s(x) + branch_s(x)`` (or another aggregation,
    see :class:`~mmrkan.models.layers.RKANBlock`). A stage is what ``out_indices`` index: an
    entry of ``res_layers`` (ResNet family, RegNet, Res2Net, ResNeSt, SEResNet), a dense block
    with its transition (DenseNet), a downsampling layer with its blocks (ConvNeXt). The
    channels and spatial stride of each branch are read from the wrapped backbone by a forward
    of a small zero image at construction, so a dilated stage (mmseg ``ResNetV1c`` with output
    stride 8) or DenseNet's last block gets stride 1. The second KAN convolution is used on the
    backbone's last stage only, as in the paper. Only the branches of the chosen stages are
    built: every parameter is used (DDP runs with ``find_unused_parameters=False``).

    The wrapped backbone's own settings keep their meaning: ``out_indices`` (the outputs are
    the wrapped backbone's), ``frozen_stages`` (the branch of a frozen stage is frozen with
    it), ``norm_eval`` (the branch norms follow it unless ``branch_norm_eval`` says otherwise),
    ``with_cp`` (the branches are recomputed in the backward pass too), ``init_cfg`` (loads the
    wrapped backbone) and, for mmpretrain backbones, ``get_layer_depth`` (layer-wise lr decay).

    Args:
        backbone: Config of the wrapped backbone, any CNN registered in mmdet, mmseg or
            mmpretrain. A plain type is looked up in the default scope; ``'mmpretrain.DenseNet'``
            style types reach another library.
        stages: Indices of the stages that get a branch, 0-based like ``out_indices``
            (ResNet: 3 is the paper's stage 4, "conv5"); negative values count from the last
            stage. Defaults to the last stage; ``(-2, -1)`` is the paper's "E" variant.
        reduce_factor: The branch width is ``C_in / reduce_factor`` (``C_in``: input channels
            of the stage). Ignored when ``expansion`` is set.
        expansion: RKAN-L inverse bottleneck: the branch width is ``C_in * expansion``
            (2, 4, 6 in the paper). One stage only: the paper reports it fails on several.
        degrees: Chebyshev degrees of the first KAN convolution and of the second (last stage
            only); the rbf basis uses KANConv2d's 3 bumps instead.
        basis: Basis of the KAN convolutions, ``'chebyshev'`` or ``'rbf'``.
        aggregation: ``'addition'``, ``'gating'`` or ``'se'`` (see ``RKANBlock``).
        norm_cfg: Config of the branch norms (use ``SyncBN`` where the backbone does).
        branch_norm_eval: Keep the branch norms in eval mode (frozen statistics) in training.
            None (default): as the wrapped backbone's ``norm_eval`` (mmdet's ResNet configs
            freeze every BN). ``False`` trains the branch statistics even where the backbone's
            are frozen (a branch added to a pretrained ResNet starts from scratch).
        pretrained: Deprecated, as in mmdet's and mmseg's backbones (mmseg's
            ``EncoderDecoder`` passes its ``pretrained`` here): a checkpoint of the wrapped
            backbone (e.g. an ImageNet ResNet). It is given to the wrapped backbone, which
            converts it and warns as it does without RKAN; a backbone without the argument
            (mmpretrain's) gets ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``
            with the same warning.
        init_cfg: Initialisation, e.g. ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')`` to load the backbone of an RKAN classifier.
    """

    def __init__(self,
                 backbone: dict,
                 stages: Sequence[int] = (-1, ),
                 reduce_factor: int = 2,
                 expansion: Optional[int] = None,
                 degrees: Sequence[int] = (3, 2),
                 basis: str = 'chebyshev',
                 aggregation: str = 'addition',
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 branch_norm_eval: Optional[bool] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_settings(reduce_factor, expansion, degrees, basis, aggregation)
        if pretrained is not None:
            if not isinstance(backbone, dict):
                raise TypeError(f'backbone={backbone!r} must be a config dict with a "type"')
            if init_cfg is not None:
                raise ValueError(
                    f'pretrained={pretrained!r} (a checkpoint of the wrapped backbone) and '
                    f'init_cfg={init_cfg!r} cannot be set at the same time')
            if backbone.get('pretrained') is not None:
                raise ValueError(f'pretrained={pretrained!r} is set for RKAN and for its '
                                 'wrapped backbone: set it once')
            if _takes_pretrained(backbone['type']):  # it converts and warns in its own words
                backbone = dict(backbone, pretrained=pretrained)
            else:
                backbone = dict(backbone, init_cfg=pretrained_init_cfg(
                    pretrained, backbone.get('init_cfg')))
        self.backbone = _build_backbone(backbone)
        self._stage_modules = _find_stage_modules(self.backbone)
        num_stages = len(self._stage_modules)
        self.stage_indices = _normalise_stage_indices(stages, num_stages, backbone['type'])
        if expansion is not None and len(self.stage_indices) > 1:
            raise ValueError(
                f'expansion={expansion} (RKAN-L) supports one stage only, got stages={stages}; '
                'the paper reports that it fails on several stages at once')
        self.branch_norm_eval = branch_norm_eval

        stage_shapes = self._probe_stage_shapes()
        self.branches = ModuleDict()
        for index in self.stage_indices:
            in_channels, out_channels, stride = stage_shapes[index]
            if expansion is not None:
                mid_channels = in_channels * expansion
            elif in_channels % reduce_factor:
                raise ValueError(
                    f'reduce_factor={reduce_factor} does not divide the {in_channels} input '
                    f'channels of stage {index} of {backbone["type"]}')
            else:
                mid_channels = in_channels // reduce_factor
            self.branches[str(index)] = RKANBlock(
                in_channels,
                out_channels,
                mid_channels,
                stride=stride,
                degree=degrees[0],
                out_degree=degrees[1] if index == num_stages - 1 else None,
                basis=basis,
                aggregation=aggregation,
                norm_cfg=norm_cfg)

        # Stage inputs kept by the pre-hooks until their stage's forward hook consumes them.
        self._stage_inputs: Dict[int, Tensor] = {}
        for index in self.stage_indices:
            entry, exit_ = self._stage_modules[index]
            entry.register_forward_pre_hook(functools.partial(self._keep_stage_input, index))
            exit_.register_forward_hook(functools.partial(self._add_branch, index))
        self._freeze_branches_of_frozen_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The wrapped backbone's outputs, with the branches added inside its stages."""
        return self.backbone(x)

    def train(self, mode: bool = True) -> 'RKAN':
        """Training mode; the wrapped backbone applies its frozen_stages and norm_eval, the
        branch norms follow ``branch_norm_eval`` (by default the backbone's ``norm_eval``)."""
        super().train(mode)
        self._freeze_branches_of_frozen_stages()
        branch_norm_eval = self.branch_norm_eval
        if branch_norm_eval is None:
            branch_norm_eval = getattr(self.backbone, 'norm_eval', False)
        if mode and branch_norm_eval:
            for module in self.branches.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for mmpretrain's layer-wise learning-rate decay: the wrapped
        backbone's depths, a branch at the depth of the last block of its stage.

        Raises:
            NotImplementedError: the wrapped backbone has no ``get_layer_depth`` (as mmpretrain's
                classifiers raise for such a backbone).
        """
        wrapped_depth = getattr(self.backbone, 'get_layer_depth', None)
        if wrapped_depth is None:
            raise NotImplementedError(f'{type(self.backbone).__name__} has no get_layer_depth: '
                                      'layer-wise learning-rate decay does not support it')
        backbone_prefix, branch_prefix = prefix + 'backbone.', prefix + 'branches.'
        if param_name.startswith(backbone_prefix):
            param_name = prefix + param_name[len(backbone_prefix):]
        elif param_name.startswith(branch_prefix):
            index = int(param_name[len(branch_prefix):].split('.')[0])
            param_name = prefix + self._last_parameter_of_stage(index)
        return wrapped_depth(param_name, prefix)

    def _last_parameter_of_stage(self, index: int) -> str:
        """The name, in the wrapped backbone, of the last parameter of stage ``index``."""
        entry, exit_ = self._stage_modules[index]
        params = list(exit_.parameters()) or list(entry.parameters())
        names = {id(param): name for name, param in self.backbone.named_parameters()}
        return names[id(params[-1])]

    def _keep_stage_input(self, index: int, module: nn.Module, args: tuple) -> None:
        self._stage_inputs[index] = args[0]

    def _add_branch(self, index: int, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        # Looked up at call time: SyncBN conversion replaces the branch modules.
        branch = self.branches[str(index)]
        stage_input = self._stage_inputs.pop(index)
        if getattr(self.backbone, 'with_cp', False) and stage_input.requires_grad:
            return cp.checkpoint(branch, stage_input, output, use_reentrant=False)
        return branch(stage_input, output)

    def _freeze_branches_of_frozen_stages(self) -> None:
        """A stage the wrapped backbone froze (``frozen_stages``) freezes its branch too."""
        for index in self.stage_indices:
            stage_params = [
                param for module in self._stage_modules[index]
                for param in module.parameters()
            ]
            if stage_params and not any(param.requires_grad for param in stage_params):
                branch = self.branches[str(index)]
                branch.eval()
                for param in branch.parameters():
                    param.requires_grad = False

    def _probe_stage_shapes(self) -> Dict[int, Tuple[int, int, int]]:
        """``(in_channels, out_channels, stride)`` of every chosen stage, from a forward of a
        zero image: the smallest of ``_PROBE_SIZES`` at which the backbone runs and gives every
        chosen stage maps of at least ``_PROBE_MIN_MAP`` a side."""
        first_conv = next((m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)), None)
        if first_conv is None:
            raise TypeError(f'{type(self.backbone).__name__} has no Conv2d: RKAN augments CNNs')
        for size in _PROBE_SIZES:
            try:
                shapes = self._probe(first_conv.in_channels, size)
            except (RuntimeError, ValueError):
                if size == _PROBE_SIZES[-1]:
                    raise
                continue  # e.g. a deformable convolution given a map smaller than its kernel
            if all(min(out_shape[2:]) >= _PROBE_MIN_MAP for _, out_shape in shapes.values()):
                break
        else:
            small = [index for index, (_, out_shape) in shapes.items()
                     if min(out_shape[2:]) < _PROBE_MIN_MAP]
            raise ValueError(
                f'stage {small[0]} of {type(self.backbone).__name__} gives '
                f'{tuple(shapes[small[0]][1][2:])} maps for a {size}x{size} input: RKAN cannot '
                'tell its stride')

        stage_shapes = {}
        for index, (in_shape, out_shape) in shapes.items():
            if len(in_shape) != 4 or len(out_shape) != 4:
                raise TypeError(
                    f'stage {index} of {type(self.backbone).__name__} maps {tuple(in_shape)} to '
                    f'{tuple(out_shape)}; RKAN needs (N, C, H, W) feature maps (a CNN stage)')
            stride = in_shape[2] // out_shape[2]
            if (in_shape[2] != out_shape[2] * stride
                    or in_shape[3] != out_shape[3] * stride):
                raise ValueError(
                    f'stage {index} of {type(self.backbone).__name__} maps {in_shape[2]}x'
                    f'{in_shape[3]} to {out_shape[2]}x{out_shape[3]}: not one integer stride')
            if stride not in (1, 2):
                raise ValueError(
                    f'stage {index} of {type(self.backbone).__name__} has spatial stride '
                    f'{stride}; the KAN convolution of the RKAN branch supports 1 or 2')
            stage_shapes[index] = (in_shape[1], out_shape[1], stride)
        return stage_shapes

    @torch.no_grad()
    def _probe(self, in_channels: int, size: int) -> Dict[int, List[torch.Size]]:
        """``[input shape, output shape]`` of every chosen stage for a ``size`` zero image."""
        shapes = {}

        def keep_input_shape(index, module, args):
            shapes[index] = [args[0].shape]

        def keep_output_shape(index, module, args, output):
            shapes[index].append(output.shape)

        handles = []
        for index in self.stage_indices:
            entry, exit_ = self._stage_modules[index]
            handles.append(
                entry.register_forward_pre_hook(functools.partial(keep_input_shape, index)))
            handles.append(
                exit_.register_forward_hook(functools.partial(keep_output_shape, index)))
        # Eval mode: the probe must not touch the running statistics of the norms. Each module's
        # mode is restored as it was (the backbone's own train() would apply its norm_eval).
        modes = [(module, module.training) for module in self.backbone.modules()]
        self.backbone.eval()
        try:
            self.backbone(torch.zeros(1, in_channels, size, size))
        finally:
            for module, training in modes:
                module.training = training
            for handle in handles:
                handle.remove()
        return shapes


def _check_settings(reduce_factor: int, expansion: Optional[int], degrees: Sequence[int],
                    basis: str, aggregation: str) -> None:
    if not isinstance(reduce_factor, int) or reduce_factor < 1:
        raise ValueError(f'reduce_factor={reduce_factor!r} must be a positive integer')
    if expansion is not None and (not isinstance(expansion, int) or expansion < 1):
        raise ValueError(
            f'expansion={expansion!r} must be None (RKAN) or a positive integer (RKAN-L)')
    if (len(degrees) != 2 or not all(isinstance(d, int) and d >= 1 for d in degrees)):
        raise ValueError(f'degrees={degrees!r} must be two positive integers: the degrees of '
                         'the first and of the second (last stage only) KAN convolution')
    if basis not in RKAN_BASES:
        raise ValueError(f'basis={basis!r} is not supported; allowed: {RKAN_BASES}')
    if aggregation not in RKAN_AGGREGATIONS:
        raise ValueError(
            f'aggregation={aggregation!r} is not supported; allowed: {RKAN_AGGREGATIONS}')


def _build_backbone(cfg: dict) -> nn.Module:
    """Build through the registry tree: the default scope's registry, or a scoped type's."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'backbone={cfg!r} must be a config dict with a "type"')
    try:
        return MODELS.build(cfg)
    except KeyError as error:
        if 'registry' not in str(error):  # a KeyError of the backbone itself, e.g. a bad depth
            raise
        raise KeyError(
            f'backbone type {cfg["type"]!r} was not found ({error}); name a type registered in '
            'mmdet, mmseg or mmpretrain, scoped (e.g. "mmdet.ResNet") or in the default '
            'scope') from error


def _takes_pretrained(backbone_type: str) -> bool:
    """Whether the registered backbone class (or the class it passes its arguments to, as
    ``ResNetV1c(**kwargs)``) has the deprecated ``pretrained`` argument (mmdet, mmseg)."""
    cls = MODELS.get(backbone_type)
    return cls is not None and any(
        'pretrained' in inspect.signature(klass.__init__).parameters
        for klass in cls.__mro__ if '__init__' in vars(klass))


def _find_stage_modules(backbone: nn.Module) -> List[Tuple[nn.Module, nn.Module]]:
    """``(entry, exit)`` modules of each stage of an OpenMMLab CNN backbone."""
    res_layers = getattr(backbone, 'res_layers', None)
    if isinstance(res_layers, (list, tuple)) and res_layers:
        stages = [getattr(backbone, name) for name in res_layers]
        return [(stage, stage) for stage in stages]
    for entry_name, exit_name in _MODULE_LIST_LAYOUTS:
        entries = getattr(backbone, entry_name, None)
        exits = getattr(backbone, exit_name, None)
        if (isinstance(entries, nn.ModuleList) and isinstance(exits, nn.ModuleList)
                and len(entries) == len(exits) > 0):
            return list(zip(entries, exits))
    raise TypeError(
        f'{type(backbone).__name__} exposes no stages that RKAN can augment: expected a '
        '"res_layers" list of stage names (ResNet family, RegNet, SEResNet, ...) or stage '
        'ModuleLists: "stages" (optionally with "transitions", as DenseNet) or '
        '"downsample_layers" + "stages" (ConvNeXt)')


def _normalise_stage_indices(stages: Sequence[int], num_stages: int,
                             backbone_type: str) -> Tuple[int, ...]:
    if isinstance(stages, int):
        stages = (stages, )
    if not stages:
        raise ValueError(f'stages={stages!r} must name at least one stage')
    indices = []
    for index in stages:
        if not isinstance(index, int) or not -num_stages <= index < num_stages:
            raise ValueError(
                f'stages={tuple(stages)} has index {index!r} out of range: {backbone_type} has '
                f'{num_stages} stages, allowed 0..{num_stages - 1} (or -{num_stages}..-1), '
                '0-based like out_indices')
        indices.append(index % num_stages)
    if len(set(indices)) != len(indices):
        raise ValueError(f'stages={tuple(stages)} names a stage twice')
    return tuple(sorted(indices))
