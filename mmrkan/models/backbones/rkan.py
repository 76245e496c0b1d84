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
from torch.nn.modules.instancenorm import _InstanceNorm

from mmrkan.models.layers.rkan_block import (KAN_CONV_SETTINGS, RKAN_AGGREGATIONS, RKANBlock,
                                             check_kan_cfg)
from mmrkan.ops import KANConv2d
from mmrkan.ops.kan_conv import MODULE_BASES
from mmrkan.ops.kan_conv_options import MAX_SPLINE_ORDER, POLYNOMIAL_BASES
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
_NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)

RKAN_BASES = MODULE_BASES
# Bases whose KAN convolutions have a degree (polynomial degree, B-spline order: the authors'
# ``spline_order``) and bases with a grid (rbf bumps, B-spline intervals: their ``grid_size``).
_DEGREE_BASES = POLYNOMIAL_BASES + ('b_spline', )
_GRID_BASES = ('rbf', 'rbf_paper', 'b_spline')
# The authors' RKAN: spline_order=(3, 2), grid_size=(3, 2) for the first and second convolution.
_DEFAULT_DEGREES = (3, 2)
_DEFAULT_GRID_SIZES = (3, 2)
# What RKAN's own arguments set in each KAN convolution; kan_cfg holds the rest.
_SET_BY_RKAN = dict(basis='basis', degree='degrees', num_bumps='grid_sizes',
                    grid_size='grid_sizes')
KAN_CFG_SETTINGS = tuple(name for name in KAN_CONV_SETTINGS if name not in _SET_BY_RKAN)


@register_model()
class RKAN(BaseModule):
    """Any OpenMMLab CNN backbone with RKAN residual KAN branches on chosen stages.

    Each augmented stage ``s`` becomes ``stage_s(x) + branch_s(x)`` (or another aggregation,
    see :class:`~mmrkan.models.layers.RKANBlock`). A stage is what ``out_indices`` index: an
    entry of ``res_layers`` (ResNet family, RegNet, Res2Net, ResNeSt, SEResNet), a dense block
    with its transition (DenseNet), a downsampling layer with its blocks (ConvNeXt). DenseNet's
    last "transition" is its final norm and ReLU: the branch is added after the norm, where the
    RKAN authors add it (after ``norm5``), and mmpretrain's ReLU follows the sum (the authors'
    code applies none there, though their comment says one should). The channels and spatial
    stride of each branch are read from the wrapped backbone by a forward of a small zero image
    at construction, so a dilated stage (mmseg ``ResNetV1c`` with output stride 8) or
    DenseNet's last block gets stride 1. The second KAN convolution is used on the backbone's
    last stage only, as in the paper. Only the branches of the chosen stages are built: every
    parameter is used (DDP runs with ``find_unused_parameters=False``).

    The wrapped backbone's own settings keep their meaning: ``out_indices`` (the outputs are
    the wrapped backbone's), ``frozen_stages`` (the branch of a frozen stage is frozen with
    it), ``norm_eval`` (the branch norms follow it unless ``branch_norm_eval`` says otherwise),
    ``with_cp`` (the branches are recomputed in the backward pass too), ``init_cfg`` (loads the
    wrapped backbone) and, for mmpretrain backbones, ``get_layer_depth`` (layer-wise lr decay).

    Per-stage settings (``reduce_factor``, ``aggregation``) take one value for every branch or a
    list, in one of two forms:

    - with ``stages`` given: one entry per chosen stage, in the order of ``stages``, e.g.
      ``stages=(2, 3), reduce_factor=(4, 2)``;
    - with ``stages=None``, the authors' form: ``aggregation`` lists one entry per stage of the
      backbone, None for a stage without a branch (their ``mechanisms``), e.g.
      ``aggregation=[None, None, 'addition', 'addition']``; a ``reduce_factor`` list then also
      has one entry per stage, None exactly where there is no branch.

    Args:
        backbone: Config of the wrapped backbone, any CNN registered in mmdet, mmseg or
            mmpretrain. A plain type is looked up in the default scope; ``'mmpretrain.DenseNet'``
            style types reach another library.
        stages: Indices of the stages that get a branch, 0-based like ``out_indices``
            (ResNet: 3 is the paper's stage 4, "conv5"); negative values count from the last
            stage. Defaults to the last stage; ``(-2, -1)`` is the paper's "E" variant. None:
            the stages whose ``aggregation`` entry is not None.
        reduce_factor: The branch width is ``C_in / reduce_factor`` (``C_in``: input channels
            of the stage); one value or a list (see above). Not used by RKAN-L (``expansion``);
            a list with ``expansion`` is refused.
        expansion: RKAN-L inverse bottleneck: the branch width is ``C_in * expansion``
            (2, 4, 6 in the paper; the authors' ``inv_factor``). One stage only: the paper
            reports it fails on several.
        degrees: Degrees of the first KAN convolution and of the second (last stage only): the
            polynomial degree of the polynomial bases, the spline order of ``b_spline`` (both
            the authors' ``spline_order``). None: ``(3, 2)``, as the authors; must stay None
            for the rbf bases.
        basis: Basis of the KAN convolutions, one of :class:`~mmrkan.ops.KANConv2d`'s:
            ``'chebyshev'`` (default), ``'legendre'``, ``'jacobi'``, ``'hermite'``, ``'rbf'``
            (the authors' FastKAN layer), ``'rbf_paper'`` (mmrkan's earlier rbf layer) or
            ``'b_spline'`` (efficient-KAN).
        aggregation: ``'addition'``, ``'gating'`` or ``'se'`` (see ``RKANBlock``); one value or
            a list (see above).
        grid_sizes: Grid of the first and of the second KAN convolution (the authors'
            ``grid_size``): the number of bumps of ``rbf`` / ``rbf_paper``, the number of grid
            intervals of ``b_spline``. None: ``(3, 2)``, as the authors; must stay None for the
            polynomial bases.
        kan_cfg: The other :class:`~mmrkan.ops.KANConv2d` settings, the same for every KAN
            convolution of the branches: ``normalization``, ``use_linear``,
            ``skip_activation``, ``use_scaler``, ``jacobi_alpha``, ``jacobi_beta``,
            ``grid_range``, ``scale_noise``, ``scale_base``, ``scale_spline``. None: the
            family's defaults (the authors').
        n_convs: KAN convolutions in the first KAN layer of each branch, their outputs
            concatenated (the authors' ``n_convs``; see ``RKANBlock``).
        shortcut: Add a projection of the stage input to each branch output (the authors'
            ``shortcut``; see ``RKANBlock``).
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
                 stages: Optional[Sequence[int]] = (-1, ),
                 reduce_factor: Union[int, Sequence[Optional[int]]] = 2,
                 expansion: Optional[int] = None,
                 degrees: Optional[Sequence[int]] = None,
                 basis: str = 'chebyshev',
                 aggregation: Union[str, Sequence[Optional[str]]] = 'addition',
                 grid_sizes: Optional[Sequence[int]] = None,
                 kan_cfg: Optional[dict] = None,
                 n_convs: int = 1,
                 shortcut: bool = False,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 branch_norm_eval: Optional[bool] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_branch_settings(stages, reduce_factor, expansion, aggregation, n_convs, shortcut)
        kan_cfgs = kan_conv_cfgs(basis, degrees, grid_sizes, kan_cfg)
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
        branch_settings = _per_stage_settings(stages, reduce_factor, expansion, aggregation,
                                              num_stages, backbone['type'])
        self.stage_indices = tuple(sorted(branch_settings))
        self.branch_norm_eval = branch_norm_eval

        stage_shapes = self._probe_stage_shapes()
        self.branches = ModuleDict()
        for index in self.stage_indices:
            in_channels, out_channels, stride = stage_shapes[index]
            stage_reduce_factor, stage_aggregation = branch_settings[index]
            if expansion is not None:
                mid_channels = in_channels * expansion
            elif in_channels % stage_reduce_factor:
                raise ValueError(
                    f'reduce_factor={stage_reduce_factor} does not divide the {in_channels} '
                    f'input channels of stage {index} of {backbone["type"]}')
            else:
                mid_channels = in_channels // stage_reduce_factor
            self.branches[str(index)] = RKANBlock(
                in_channels,
                out_channels,
                mid_channels,
                stride=stride,
                kan_cfg=kan_cfgs[0],
                out_kan_cfg=kan_cfgs[1] if index == num_stages - 1 else None,
                n_convs=n_convs,
                shortcut=shortcut,
                aggregation=stage_aggregation,
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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple))


def _check_branch_settings(stages: Optional[Sequence[int]],
                           reduce_factor: Union[int, Sequence[Optional[int]]],
                           expansion: Optional[int],
                           aggregation: Union[str, Sequence[Optional[str]]], n_convs: int,
                           shortcut: bool) -> None:
    """The values of the branch settings, before anything is built; the lengths of the
    per-stage lists need the backbone's stages (:func:`_per_stage_settings`)."""
    if expansion is not None and (not _is_int(expansion) or expansion < 1):
        raise ValueError(
            f'expansion={expansion!r} must be None (RKAN) or a positive integer (RKAN-L)')
    if not _is_int(n_convs) or n_convs < 1:
        raise ValueError(f'n_convs={n_convs!r} must be a positive integer')
    if not isinstance(shortcut, bool):
        raise ValueError(f'shortcut={shortcut!r} must be True or False')
    if stages is None and not (_is_list(aggregation) and aggregation):
        raise ValueError(
            f'stages=None takes the stages from aggregation, which must then list one entry '
            f'per stage of the backbone, None for no branch (the authors\' mechanisms), e.g. '
            f"[None, None, None, 'addition']; got aggregation={aggregation!r}")
    if expansion is not None and _is_list(reduce_factor):
        raise ValueError(f'reduce_factor={reduce_factor!r} and expansion={expansion} contradict '
                         'each other: RKAN-L (expansion) sets the branch width instead')
    if stages is not None and not (_is_int(stages) or _is_list(stages) and stages
                                   and all(_is_int(index) for index in stages)):
        raise ValueError(f'stages={stages!r} must be a stage index, a list of them or None')
    no_branch = (' or None (no branch)' if stages is None else
                 ' (None, for no branch, only in a list over all stages, with stages=None)')
    if _is_list(reduce_factor):
        for entry in reduce_factor:
            if not (_is_int(entry) and entry >= 1 or entry is None and stages is None):
                raise ValueError(f'reduce_factor={reduce_factor!r} has {entry!r}; allowed: '
                                 f'positive integers{no_branch}')
    elif not _is_int(reduce_factor) or reduce_factor < 1:
        raise ValueError(f'reduce_factor={reduce_factor!r} must be a positive integer (or a list '
                         'of them, one per stage)')
    if _is_list(aggregation):
        for entry in aggregation:
            if not (entry in RKAN_AGGREGATIONS or entry is None and stages is None):
                raise ValueError(f'aggregation={aggregation!r} has {entry!r}, not supported; '
                                 f'allowed: {RKAN_AGGREGATIONS}{no_branch}')
    elif aggregation not in RKAN_AGGREGATIONS:
        raise ValueError(
            f'aggregation={aggregation!r} is not supported; allowed: {RKAN_AGGREGATIONS}')


def _per_stage_settings(stages: Optional[Sequence[int]],
                        reduce_factor: Union[int, Sequence[Optional[int]]],
                        expansion: Optional[int],
                        aggregation: Union[str, Sequence[Optional[str]]], num_stages: int,
                        backbone_type: str) -> Dict[int, Tuple[int, str]]:
    """``{stage index: (reduce factor, aggregation)}`` of every stage that gets a branch."""
    if stages is None:  # the authors' form: lists over all stages, None for no branch
        for name, value in (('aggregation', aggregation), ('reduce_factor', reduce_factor)):
            if _is_list(value) and len(value) != num_stages:
                raise ValueError(
                    f'{name}={list(value)} has {len(value)} entries; with stages=None it has one '
                    f'per stage of {backbone_type} ({num_stages}), None for no branch')
        indices = [index for index, entry in enumerate(aggregation) if entry is not None]
        if not indices:
            raise ValueError(f'aggregation={list(aggregation)} gives no stage a branch (every '
                             'entry is None)')
        if _is_list(reduce_factor):
            for index in range(num_stages):
                if (reduce_factor[index] is None) != (aggregation[index] is None):
                    raise ValueError(
                        f'reduce_factor={list(reduce_factor)} and aggregation='
                        f'{list(aggregation)} disagree at stage {index}: reduce_factor is None '
                        'exactly where aggregation is None (no branch)')
            reduce_factors = [reduce_factor[index] for index in indices]
        else:
            reduce_factors = [reduce_factor] * len(indices)
        aggregations = [aggregation[index] for index in indices]
        chosen = f'aggregation={list(aggregation)}'
    else:
        indices = _normalise_stage_indices(stages, num_stages, backbone_type)
        chosen = f'stages={tuple(stages) if _is_list(stages) else (stages, )}'
        for name, value in (('reduce_factor', reduce_factor), ('aggregation', aggregation)):
            if _is_list(value) and len(value) != len(indices):
                raise ValueError(
                    f'{name}={list(value)} has {len(value)} entries but {chosen} chooses '
                    f'{len(indices)} stage(s): give one value, one per chosen stage (in the order '
                    f'of stages), or stages=None and one entry per stage of {backbone_type} '
                    f'({num_stages}), None for no branch')
        reduce_factors = (list(reduce_factor) if _is_list(reduce_factor) else
                          [reduce_factor] * len(indices))
        aggregations = (list(aggregation) if _is_list(aggregation) else
                        [aggregation] * len(indices))
    if expansion is not None and len(indices) > 1:
        raise ValueError(
            f'expansion={expansion} (RKAN-L) supports one stage only, got {chosen}; the paper '
            'reports that it fails on several stages at once')
    return dict(zip(indices, zip(reduce_factors, aggregations)))


def _per_conv_values(name: str, value: Optional[Sequence[int]], basis: str) -> Optional[tuple]:
    """``degrees`` or ``grid_sizes`` of the first and second KAN convolution, checked for the
    basis; None where the basis has no such setting."""
    if name == 'degrees':
        bases, default = _DEGREE_BASES, _DEFAULT_DEGREES
        low, high, what = ((1, MAX_SPLINE_ORDER, 'spline orders') if basis == 'b_spline' else
                           (0, None, 'polynomial degrees'))
    else:
        bases, default = _GRID_BASES, _DEFAULT_GRID_SIZES
        low, high, what = ((1, None, 'numbers of grid intervals') if basis == 'b_spline' else
                           (2, None, 'numbers of bumps'))
    if basis not in bases:
        if value is not None:
            raise ValueError(f'{name}={value!r} is not used by basis={basis!r} (only by '
                             f'{", ".join(bases)}); leave it None')
        return None
    if value is None:
        return default
    if not (_is_list(value) and len(value) == 2 and all(
            _is_int(v) and v >= low and (high is None or v <= high) for v in value)):
        allowed = f'ints from {low} to {high}' if high is not None else f'ints >= {low}'
        raise ValueError(f'{name}={value!r} must be two {what} ({allowed}) for basis={basis!r}: '
                         'those of the first and of the second (last stage only) KAN convolution')
    return tuple(value)


def kan_conv_cfgs(basis: str, degrees: Optional[Sequence[int]] = None,
                  grid_sizes: Optional[Sequence[int]] = None,
                  kan_cfg: Optional[dict] = None) -> Tuple[dict, dict]:
    """The :class:`~mmrkan.ops.KANConv2d` configs (but the stride) of the first and of the
    second KAN convolution of an RKAN branch, from RKAN's settings, checked before anything is
    built: a ValueError names the setting, the value and what is allowed."""
    if not isinstance(basis, str) or basis not in RKAN_BASES:
        raise ValueError(f'basis={basis!r} is not supported; allowed: {RKAN_BASES}')
    degrees = _per_conv_values('degrees', degrees, basis)
    grid_sizes = _per_conv_values('grid_sizes', grid_sizes, basis)
    kan_cfg = {} if kan_cfg is None else kan_cfg
    for key in _SET_BY_RKAN:
        if isinstance(kan_cfg, dict) and key in kan_cfg:
            raise ValueError(f'kan_cfg sets {key}={kan_cfg[key]!r}, which RKAN\'s '
                             f'{_SET_BY_RKAN[key]}= sets (per convolution); set it there')
    check_kan_cfg('kan_cfg', kan_cfg, KAN_CFG_SETTINGS)
    cfgs = []
    for conv in range(2):
        cfg = dict(kan_cfg, basis=basis)
        if degrees is not None:
            cfg['degree'] = degrees[conv]
        if grid_sizes is not None:
            cfg['grid_size' if basis == 'b_spline' else 'num_bumps'] = grid_sizes[conv]
        cfgs.append(cfg)
    # KANConv2d's own checks of the values (normalisation names, Jacobi alpha and beta, grid
    # ranges...) on throwaway convolutions, without drawing from the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        for cfg in cfgs:
            try:
                KANConv2d(**cfg)
            except ValueError as error:
                raise ValueError(f'kan_cfg={kan_cfg!r}: {error}') from error
    return cfgs[0], cfgs[1]


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
            stages = list(zip(entries, exits))
            if exit_name == 'transitions':
                stages[-1] = (entries[-1], _final_norm_or_transition(exits[-1]))
            return stages
    raise TypeError(
        f'{type(backbone).__name__} exposes no stages that RKAN can augment: expected a '
        '"res_layers" list of stage names (ResNet family, RegNet, SEResNet, ...) or stage '
        'ModuleLists: "stages" (optionally with "transitions", as DenseNet) or '
        '"downsample_layers" + "stages" (ConvNeXt)')


def _final_norm_or_transition(transition: nn.Module) -> nn.Module:
    """Where the branch of DenseNet's last stage joins. mmpretrain's last "transition" is
    only the final norm and its activation (``Sequential(norm5, ReLU)``): the branch is added
    after the norm, before the ReLU, where the RKAN authors add it (after ``norm5``)."""
    if (isinstance(transition, nn.Sequential) and len(transition) == 2
            and isinstance(transition[0], _NORMS)):
        return transition[0]
    return transition


def _normalise_stage_indices(stages: Union[int, Sequence[int]], num_stages: int,
                             backbone_type: str) -> List[int]:
    """The stage indices, non-negative, in the order given."""
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
    return indices
