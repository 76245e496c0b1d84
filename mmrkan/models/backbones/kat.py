"""KAT: Vision Transformer with group-rational KAN channel mixers (``docs/models.md``, "KAT").

One backbone, written once, for three tasks:

- classification (mmpretrain): class token, ``out_type='cls_token'``, final norm;
- segmentation (mmseg, UperNet like mmseg's DeiT configs): ``out_type='featmap'``,
  ``out_indices=(2, 5, 8, 11)``, no final norm, position embedding resized to the input;
- detection (mmdet): :class:`KATDet`, the ViTDet-style configuration of the same class.
"""
import copy
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import ModuleList
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import build_norm_layer, resize_pos_embed, to_2tuple
from torch import nn

from mmrkan.ops.group_rational import DEFAULT_ORDER
from mmrkan.registry import register_model
from ..layers.kat_block import KATBlock
from .pretrained import pretrained_init_cfg


# Defaults on which mmpretrain's and mmseg's VisionTransformer disagree: a KAT given its
# architecture the mmseg way (embed_dims, num_layers, ...) takes mmseg's.
_MMPRETRAIN_DEFAULTS = dict(arch='small', out_type='cls_token', final_norm=True,
                            norm_cfg=dict(type='LN', eps=1e-6))
_MMSEG_DEFAULTS = dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4,
                       out_type='featmap', final_norm=False, norm_cfg=dict(type='LN'),
                       patch_bias=False)


@register_model()
class KAT(VisionTransformer):
    """Kolmogorov-Arnold Transformer backbone (`arXiv 2409.10594`).

    mmpretrain's ``VisionTransformer`` whose blocks are :class:`KATBlock` (GR-KAN mixer instead of
    the MLP). Everything else is inherited: checkpoint position-embedding resizing, output
    formats, ``frozen_stages`` and ``get_layer_depth`` (mmpretrain's layer-wise lr decay).

    KAT takes the arguments of both parents with their meaning, so that a stock config with the
    type swapped builds the same network with GR-KAN mixers: mmpretrain's ``VisionTransformer``
    (``arch=...``) and mmseg's (``embed_dims``, ``num_layers``, ``num_heads``, ``mlp_ratio``
    instead of ``arch``). Where the two disagree on a default (``out_type``, ``final_norm``,
    ``norm_cfg``, the patch-embedding bias), a KAT given ``arch`` (or neither) takes
    mmpretrain's, one given mmseg's architecture arguments takes mmseg's: feature maps, no final
    norm, LayerNorm eps 1e-5, no patch-embedding bias. What differs from the parents on purpose
    is listed in the README ("KAT and RKAN as drop-in backbones").

    Args:
        arch: ``'tiny'``, ``'small'`` (default), ``'base'`` (or ``'t'``, ``'s'``, ``'b'``): the
            paper's KAT-T/S/B, with DeiT's sizes; the other names of mmpretrain's
            ``VisionTransformer`` (``'deit-small'``, ``'large'``, ...) with their sizes; or a
            dict with ``embed_dims``, ``num_layers``, ``num_heads``, ``feedforward_channels``.
        img_size: input size the position embedding is stored for; other sizes resize it
            (bicubic) at every forward.
        patch_size: patch size.
        in_channels: input channels.
        out_indices: blocks whose outputs are returned (negative counts from the end).
        drop_rate: dropout after the position embedding, the attention projection and the
            rationals.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last block, linearly increasing from 0.
        qkv_bias: bias of the qkv projections.
        norm_cfg: normalisation of the blocks, ``pre_norm`` and the final norm (default
            LayerNorm, eps 1e-6; mmseg style: eps 1e-5).
        final_norm: normalise the output of the last block (default True; mmseg style: False).
        out_type: ``'cls_token'`` (default), ``'featmap'`` (``(B, C, H, W)``, the mmseg style's
            default), ``'avg_featmap'`` or ``'raw'``.
        with_cls_token: prepend a class token.
        frozen_stages: freeze the patch embedding and this many first blocks (-1: none).
        interpolate_mode: position-embedding resizing mode.
        layer_scale_init_value: initial value of a LayerScale on both residual branches of every
            block (attention and GR-KAN mixer); 0 (default) for none.
        patch_cfg: overrides of mmcv's ``PatchEmbed`` arguments (e.g. ``padding='corner'`` to
            accept sizes that are not multiples of the patch).
        layer_cfgs: per-block overrides of :class:`KATBlock` arguments, one dict for all or a
            list of ``num_layers`` dicts (e.g. ``window_size``).
        pre_norm: normalise the tokens before the first block (after the position embedding);
            the patch embedding then has no bias, as in mmpretrain (CLIP).
        num_groups: channel groups of the GR-KAN rationals (default 8); ``'per_channel'``: one
            rational per channel (the KAT paper's ungrouped ablation).
        act_init: initial function of each mixer's second rational: ``'swish'`` (default, the
            released KAT models), ``'gelu'`` (KAT* initialised from a ViT/DeiT), ``'identity'``
            or ``'random'`` (Xavier-uniform coefficients; the paper's initialisation ablation).
        rational1_init: initial function of each mixer's first rational: ``'identity'``
            (default, the released models) or another init of ``act_init``.
        rational_order: ``(m, n)`` of every rational: ``(5, 4)`` (default), ``(3, 2)`` or
            ``(7, 6)`` (the paper's order ablation).
        per_group_numerator: one numerator per group in every rational, instead of one shared
            by the groups of a rational (the released models).
        variance_preserving_init: variance-preserving initialisation of the mixers' linears
            (see :class:`~mmrkan.models.layers.GRKAN`); off by default.
        embed_dims, num_layers, num_heads, mlp_ratio: mmseg's architecture arguments, instead of
            ``arch`` (unset ones take mmseg's defaults 768, 12, 12, 4).
        patch_pad: padding of the patch embedding (``'corner'``: pad inputs that are not
            multiples of the patch).
        patch_bias: bias of the patch embedding (default: ``not pre_norm``; mmseg style: False).
        patch_norm: normalise the patch embedding's output (inside ``patch_embed``).
        out_origin: also return the tokens entering the first block, first, formatted as the
            other outputs (mmseg).
        output_cls_token: return ``[feature map, class token]`` per output (mmseg); needs
            ``out_type='featmap'`` and ``with_cls_token``.
        act_cfg: the ViT's MLP activation; the mixers' rationals start as it (GELU: ``'gelu'``,
            SiLU/Swish: ``'swish'``). Must agree with ``act_init`` when both are given.
        num_fcs: linear layers per mixer; GR-KAN has 2, the only value accepted.
        norm_eval: keep the LayerNorms in eval mode during training (mmseg; no effect on their
            output).
        with_cp: recompute each block in the backward pass instead of storing its activations
            (gradient checkpointing, saves memory).
        frozen_exclude: freeze every parameter whose name contains none of these strings;
            ``('all', )`` (default) freezes nothing (mmseg; the names are KAT's, e.g. ``'kan'``).
        pretrained: deprecated checkpoint path, converted to
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)`` with mmseg's warning
            (mmseg's ``EncoderDecoder`` passes its ``pretrained`` here).
        init_cfg: mmengine initialisation config.
    """
    # The parent's names (deit-tiny, base, large, ...) keep their meaning; 'tiny', 'small' and
    # 'base' are the KAT paper's KAT-T/S/B (DeiT's sizes), so 's'/'small' is not mmpretrain's
    # 8-block ViT-small.
    arch_zoo = {
        **VisionTransformer.arch_zoo,
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': 192,
            'num_layers': 12,
            'num_heads': 3,
            'feedforward_channels': 192 * 4
        }),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 384,
            'num_layers': 12,
            'num_heads': 6,
            'feedforward_channels': 384 * 4
        }),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': 768,
            'num_layers': 12,
            'num_heads': 12,
            'feedforward_channels': 768 * 4
        }),
    }

    # VisionTransformer.__init__ builds its own (MLP) blocks, so this constructor replaces it
    # (mmpretrain's DeiT3 does the same) and sets every attribute its inherited methods use.
    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 norm_cfg: Optional[dict] = None,
                 final_norm: Optional[bool] = None,
                 out_type: Optional[str] = None,
                 with_cls_token: bool = True,
                 frozen_stages: int = -1,
                 interpolate_mode: str = 'bicubic',
                 layer_scale_init_value: float = 0.,
                 patch_cfg: dict = dict(),
                 layer_cfgs: Union[dict, Sequence[dict]] = dict(),
                 pre_norm: bool = False,
                 num_groups: Union[int, str] = 8,
                 act_init: Optional[str] = None,
                 variance_preserving_init: bool = False,
                 rational1_init: str = 'identity',
                 rational_order: Sequence[int] = DEFAULT_ORDER,
                 per_group_numerator: bool = False,
                 embed_dims: Optional[int] = None,
                 num_layers: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 mlp_ratio: Optional[float] = None,
                 patch_pad: Union[str, int, None] = 'corner',
                 patch_bias: Optional[bool] = None,
                 patch_norm: bool = False,
                 out_origin: bool = False,
                 output_cls_token: bool = False,
                 act_cfg: Optional[dict] = None,
                 num_fcs: int = 2,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 frozen_exclude: Sequence[str] = ('all', ),
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super(VisionTransformer, self).__init__(init_cfg)
        self.init_cfg = pretrained_init_cfg(pretrained, init_cfg)
        mmseg_arch = dict(embed_dims=embed_dims, num_layers=num_layers, num_heads=num_heads,
                          mlp_ratio=mlp_ratio)
        if any(value is not None for value in mmseg_arch.values()):
            if arch is not None:
                raise ValueError(
                    f'arch={arch!r} and {_given(mmseg_arch)}: give the architecture either as '
                    'arch (mmpretrain\'s VisionTransformer) or as embed_dims, num_layers, '
                    'num_heads, mlp_ratio (mmseg\'s), not both')
            defaults = _MMSEG_DEFAULTS
            mmseg_arch = {key: defaults[key] if value is None else value
                          for key, value in mmseg_arch.items()}
            arch = dict(embed_dims=mmseg_arch['embed_dims'], num_layers=mmseg_arch['num_layers'],
                        num_heads=mmseg_arch['num_heads'], feedforward_channels=int(
                            mmseg_arch['mlp_ratio'] * mmseg_arch['embed_dims']))
        else:
            defaults = _MMPRETRAIN_DEFAULTS
            arch = defaults['arch'] if arch is None else arch
        out_type = defaults['out_type'] if out_type is None else out_type
        final_norm = defaults['final_norm'] if final_norm is None else final_norm
        norm_cfg = copy.deepcopy(defaults['norm_cfg']) if norm_cfg is None else norm_cfg
        if patch_bias is None:
            patch_bias = defaults.get('patch_bias', not pre_norm)

        self.arch_settings = self.get_arch_settings(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        if isinstance(img_size, (tuple, list)):
            if len(img_size) not in (1, 2):
                raise ValueError(f'img_size={img_size!r} must be an int, (size, ) or (h, w)')
            img_size = img_size[0] if len(img_size) == 1 else tuple(img_size)
        self.img_size = to_2tuple(img_size)

        _patch_cfg = dict(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=patch_size,
            padding=patch_pad,
            bias=patch_bias,
            norm_cfg=norm_cfg if patch_norm else None)
        _patch_cfg.update(patch_cfg)
        self.patch_embed = PatchEmbed(**_patch_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type={out_type!r} is not supported; allowed: '
                             f'{sorted(self.OUT_TYPES)}')
        self.out_type = out_type
        if output_cls_token and not (with_cls_token and out_type == 'featmap'):
            raise ValueError(
                f'output_cls_token=True returns [feature map, class token] pairs: it needs '
                f'with_cls_token=True and out_type=\'featmap\', got with_cls_token='
                f'{with_cls_token}, out_type={out_type!r}')
        self.output_cls_token = output_cls_token
        self.out_origin = out_origin
        self.with_cls_token = with_cls_token
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        elif out_type == 'cls_token':
            raise ValueError('out_type=\'cls_token\' needs with_cls_token=True')
        else:
            self.cls_token = None
            self.num_extra_tokens = 0

        self.interpolate_mode = interpolate_mode
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + self.num_extra_tokens, self.embed_dims))
        self._register_load_state_dict_pre_hook(self._prepare_pos_embed)
        self._register_load_state_dict_pre_hook(self._check_checkpoint)
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.out_indices = self._normalize_out_indices(out_indices)

        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * self.num_layers
        if len(layer_cfgs) != self.num_layers:
            raise ValueError(f'layer_cfgs has {len(layer_cfgs)} entries; it must be one dict or '
                             f'num_layers={self.num_layers} dicts')
        drop_path_rates = np.linspace(0, drop_path_rate, self.num_layers)
        self.layers = ModuleList()
        for i in range(self.num_layers):
            layer_cfg = dict(
                embed_dims=self.embed_dims,
                num_heads=self.arch_settings['num_heads'],
                feedforward_channels=self.arch_settings['feedforward_channels'],
                num_groups=num_groups,
                act_init=act_init,
                act_cfg=act_cfg,
                num_fcs=num_fcs,
                layer_scale_init_value=layer_scale_init_value,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=float(drop_path_rates[i]),
                qkv_bias=qkv_bias,
                norm_cfg=norm_cfg,
                variance_preserving_init=variance_preserving_init,
                rational_order=rational_order,
                rational1_init=rational1_init,
                per_group_numerator=per_group_numerator)
            layer_cfg.update(layer_cfgs[i])
            needs_grid = layer_cfg.get('window_size', 0) > 0 or layer_cfg.get('rel_pos_size')
            if needs_grid and with_cls_token:
                raise ValueError(f'layer {i}: window_size and rel_pos_size work on the patch '
                                 'grid only; set with_cls_token=False')
            self.layers.append(KATBlock(**layer_cfg))

        self.frozen_stages = frozen_stages
        self.pre_norm = build_norm_layer(norm_cfg, self.embed_dims) if pre_norm else nn.Identity()
        self.final_norm = final_norm
        if final_norm:
            self.ln1 = build_norm_layer(norm_cfg, self.embed_dims)
        if out_type == 'avg_featmap':
            self.ln2 = build_norm_layer(norm_cfg, self.embed_dims)
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        if isinstance(frozen_exclude, str):
            raise TypeError(f'frozen_exclude={frozen_exclude!r} must be a list of name parts')
        self.frozen_exclude = tuple(frozen_exclude)
        if 'all' not in self.frozen_exclude:
            for name, param in self.named_parameters():
                if not any(part in name for part in self.frozen_exclude):
                    param.requires_grad = False
        if frozen_stages > 0:
            self._freeze_stages()

    @classmethod
    def get_arch_settings(cls, arch: Union[str, dict]) -> dict:
        """The ``embed_dims``/``num_layers``/``num_heads``/``feedforward_channels`` of ``arch``."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(f'{cls.__name__}: arch={arch!r} is not supported; allowed: '
                                 f'{sorted(cls.arch_zoo)} or a dict')
            return cls.arch_zoo[arch.lower()]
        essential_keys = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not essential_keys <= set(arch):
            raise ValueError(f'{cls.__name__}: a custom arch must be a dict with the keys '
                             f'{sorted(essential_keys)}, got {arch!r}')
        return arch

    def _normalize_out_indices(self, out_indices: Union[int, Sequence[int]]) -> list:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not (isinstance(out_indices, Sequence)
                and all(isinstance(index, int) for index in out_indices)):
            raise TypeError(f'out_indices={out_indices!r} must be an int or a list/tuple of ints')
        normalized = [index + self.num_layers if index < 0 else index for index in out_indices]
        for index, value in zip(out_indices, normalized):
            if not 0 <= value < self.num_layers:
                raise ValueError(f'out_indices contains {index}: blocks are numbered 0 to '
                                 f'{self.num_layers - 1} (negative values count from the end)')
        return normalized

    def train(self, mode: bool = True) -> 'KAT':
        """Set the training mode, keeping frozen stages (and with ``norm_eval`` the LayerNorms)
        in eval mode (mmpretrain's backbones put frozen stages back in training mode and return
        None)."""
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.LayerNorm):
                    module.eval()
        return self

    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Drop a checkpoint's class-token row when this model has no class token, then let
        mmpretrain resize the grid (mmpretrain drops the row only for equal grid sizes)."""
        name = prefix + 'pos_embed'
        if self.cls_token is None and name in state_dict:
            num_tokens = state_dict[name].shape[1]
            if num_tokens == math.isqrt(num_tokens - 1)**2 + 1:
                state_dict[name] = state_dict[name][:, 1:]
        super()._prepare_pos_embed(state_dict, prefix, *args, **kwargs)

    def _check_checkpoint(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Fail clearly on a checkpoint of another model, which mmengine's loaders would load
        with a warning, keeping random weights: parameters of another shape, or no GR-KAN mixer
        weights at all (a ViT/DeiT checkpoint, or timm key names).

        Other missing keys are left to the loader, which warns as it does for mmpretrain's
        ``VisionTransformer``: a partial checkpoint initialises what it has (e.g. a classifier
        checkpoint without the ``ln2`` of ``out_type='avg_featmap'``, a segmentation checkpoint
        without the final norm ``ln1``, a model without the layer scales). Checkpoints without any
        key under ``prefix`` do not concern this backbone and pass; extra keys are left to the
        loader too.
        """
        if not any(key.startswith(prefix) for key in state_dict):
            return
        params = dict(self.named_parameters())
        mismatched = [
            f'{name}: checkpoint {tuple(state_dict[prefix + name].shape)}, model '
            f'{tuple(param.shape)}' for name, param in params.items()
            if prefix + name in state_dict and state_dict[prefix + name].shape != param.shape
        ]
        mixers = [name for name in params if '.kan.' in name]
        has_mixers = any(prefix + name in state_dict for name in mixers)
        if not mismatched and (has_mixers or not mixers):
            return
        if mismatched:
            problem = f'shape mismatches {mismatched[:2]}'
        else:
            problem = (f'it holds no GR-KAN mixer weights ({len(mixers)} missing keys '
                       f'{mixers[:4]})')
        timm_layout = any(key.startswith(prefix + 'blocks.') for key in state_dict)
        hint = (' It has timm key names: convert it with tools/model_converters/'
                'kat_timm2mmrkan.py (a KAT) or vit2kat.py (a ViT/DeiT).' if timm_layout else '')
        raise ValueError(
            f'the checkpoint does not fit this {type(self).__name__} '
            f'({self.embed_dims} channels, {self.num_layers} blocks) under prefix '
            f'{prefix!r}: {problem}.{hint}')

    def forward(self, x: torch.Tensor) -> tuple:
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = self.pre_norm(self.drop_after_pos(x))

        outs = [self._format_output(x, patch_resolution)] if self.out_origin else []
        for i, layer in enumerate(self.layers):
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(layer, x, patch_resolution, use_reentrant=False)
            else:
                x = layer(x, patch_resolution)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int]):
        out = super()._format_output(x, hw)
        return [out, x[:, 0]] if self.output_cls_token else out


def _given(settings: dict) -> str:
    return ', '.join(f'{key}={value!r}' for key, value in settings.items() if value is not None)


@register_model()
class KATDet(KAT):
    """KAT as a ViTDet-style detection backbone (KATDet).

    Plain KAT blocks on the patch grid (no class token), windowed attention in all blocks but
    ``global_attn_indexes``, output ``(B, C, H/16, W/16)`` feature maps of ``out_indices`` (the
    last block by default, for :class:`~mmrkan.models.necks.SimpleFeaturePyramid`). Inputs of
    any size work: the patch embedding pads to the patch size, windowed blocks pad to the
    window grid.

    The absolute position embedding is stored for ``img_size`` (1024, as ViTDet): loading a
    224x224 classification checkpoint drops its class-token row and resizes the 14x14 grid;
    every forward resizes it again to the input's grid. Relative positions are an option (the
    official KAT weights have none; the tables start at zero).

    Args:
        arch: as :class:`KAT`.
        img_size: size of the stored position embedding and of the global blocks' relative
            position tables.
        window_size: attention window of the windowed blocks, in tokens.
        global_attn_indexes: blocks with global attention.
        use_rel_pos: add decomposed relative positions to every block's attention.
        out_indices: blocks whose outputs are returned.
        drop_path_rate: stochastic depth of the last block.
        **kwargs: other :class:`KAT` arguments (``num_groups``, ``act_init``,
            ``rational_order``, ``per_group_numerator``, ``frozen_stages``, ``norm_cfg``,
            ``init_cfg``, ...).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 img_size: Union[int, Tuple[int, int]] = 1024,
                 window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
                 use_rel_pos: bool = False,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: float = 0.1,
                 patch_size: int = 16,
                 patch_cfg: dict = dict(padding='corner'),
                 **kwargs) -> None:
        num_layers = self.get_arch_settings(arch)['num_layers']
        invalid = [i for i in global_attn_indexes if not 0 <= i < num_layers]
        if invalid:
            raise ValueError(f'global_attn_indexes={tuple(global_attn_indexes)}: {invalid} are not '
                             f'blocks (0 to {num_layers - 1})')
        if window_size <= 0:
            raise ValueError(f'window_size={window_size} must be positive; KATDet windows the '
                             'blocks not in global_attn_indexes')
        grid = tuple(size // patch_size for size in to_2tuple(img_size))
        layer_cfgs = []
        for i in range(num_layers):
            is_global = i in global_attn_indexes
            rel_pos_size = (grid if is_global else (window_size, window_size)) if use_rel_pos \
                else None
            layer_cfgs.append(
                dict(window_size=0 if is_global else window_size, rel_pos_size=rel_pos_size))
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            patch_cfg=patch_cfg,
            out_indices=out_indices,
            drop_path_rate=drop_path_rate,
            with_cls_token=False,
            out_type='featmap',
            final_norm=False,
            layer_cfgs=layer_cfgs,
            **kwargs)
