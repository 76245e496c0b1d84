"""KAT: Vision Transformer with group-rational KAN channel mixers (``docs/models.md``, "KAT").

One backbone, written once, for three tasks:

- classification (mmpretrain): class token, ``out_type='cls_token'``, final norm;
- segmentation (mmseg, UperNet like mmseg's DeiT configs): ``out_type='featmap'``,
  ``out_indices=(2, 5, 8, 11)``, no final norm, position embedding resized to the input;
- detection (mmdet): :class:`KATDet`, the ViTDet-style configuration of the same class.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import ModuleList
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import build_norm_layer, resize_pos_embed, to_2tuple
from torch import nn

from mmrkan.registry import register_model
from ..layers.kat_block import KATBlock


@register_model()
class KAT(VisionTransformer):
    """Kolmogorov-Arnold Transformer backbone (`arXiv 2409.10594`).

    mmpretrain's ``VisionTransformer`` whose blocks are :class:`KATBlock` (GR-KAN mixer instead of
    the MLP). Everything else is inherited: checkpoint position-embedding resizing, output
    formats, ``frozen_stages`` and ``get_layer_depth`` (mmpretrain's layer-wise lr decay).

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'`` (or ``'t'``, ``'s'``, ``'b'``), or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads``, ``feedforward_channels``.
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
        norm_cfg: normalisation of the blocks and the final norm (LayerNorm, eps 1e-6).
        final_norm: normalise the output of the last block.
        out_type: ``'cls_token'``, ``'featmap'`` (``(B, C, H, W)``), ``'avg_featmap'`` or
            ``'raw'``.
        with_cls_token: prepend a class token.
        frozen_stages: freeze the patch embedding and this many first blocks (-1: none).
        interpolate_mode: position-embedding resizing mode.
        num_groups: channel groups of the GR-KAN rationals.
        act_init: initial function of each mixer's second rational: ``'swish'`` (the released
            KAT models) or ``'gelu'`` (KAT* initialised from a ViT/DeiT).
        variance_preserving_init: variance-preserving initialisation of the mixers' linears
            (see :class:`~mmrkan.models.layers.GRKAN`); off by default.
        patch_cfg: overrides of mmcv's ``PatchEmbed`` arguments (e.g. ``padding='corner'`` to
            accept sizes that are not multiples of the patch).
        layer_cfgs: per-block overrides of :class:`KATBlock` arguments, one dict for all or a
            list of ``num_layers`` dicts (e.g. ``window_size``).
        init_cfg: mmengine initialisation config.
    """
    arch_zoo = {
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
                 arch: Union[str, dict] = 'small',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 final_norm: bool = True,
                 out_type: str = 'cls_token',
                 with_cls_token: bool = True,
                 frozen_stages: int = -1,
                 interpolate_mode: str = 'bicubic',
                 num_groups: int = 8,
                 act_init: str = 'swish',
                 variance_preserving_init: bool = False,
                 patch_cfg: dict = dict(),
                 layer_cfgs: Union[dict, Sequence[dict]] = dict(),
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super(VisionTransformer, self).__init__(init_cfg)
        self.arch_settings = self.get_arch_settings(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        self.img_size = to_2tuple(img_size)

        _patch_cfg = dict(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=patch_size)
        _patch_cfg.update(patch_cfg)
        self.patch_embed = PatchEmbed(**_patch_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        if out_type not in self.OUT_TYPES:
            raise ValueError(f'out_type={out_type!r} is not supported; allowed: '
                             f'{sorted(self.OUT_TYPES)}')
        self.out_type = out_type
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
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=float(drop_path_rates[i]),
                qkv_bias=qkv_bias,
                norm_cfg=norm_cfg,
                variance_preserving_init=variance_preserving_init)
            layer_cfg.update(layer_cfgs[i])
            needs_grid = layer_cfg.get('window_size', 0) > 0 or layer_cfg.get('rel_pos_size')
            if needs_grid and with_cls_token:
                raise ValueError(f'layer {i}: window_size and rel_pos_size work on the patch '
                                 'grid only; set with_cls_token=False')
            self.layers.append(KATBlock(**layer_cfg))

        self.frozen_stages = frozen_stages
        self.pre_norm = nn.Identity()  # read by VisionTransformer._freeze_stages
        self.final_norm = final_norm
        if final_norm:
            self.ln1 = build_norm_layer(norm_cfg, self.embed_dims)
        if out_type == 'avg_featmap':
            self.ln2 = build_norm_layer(norm_cfg, self.embed_dims)
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
        normalized = [index + self.num_layers if index < 0 else index for index in out_indices]
        for index, value in zip(out_indices, normalized):
            if not 0 <= value < self.num_layers:
                raise ValueError(f'out_indices contains {index}: blocks are numbered 0 to '
                                 f'{self.num_layers - 1} (negative values count from the end)')
        return normalized

    def train(self, mode: bool = True) -> 'KAT':
        """Set the training mode, keeping frozen stages in eval mode (mmpretrain's backbones
        put them back in training mode and return None)."""
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
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
        """Fail clearly on a checkpoint of another model (mmengine's loaders only warn about
        missing keys and shape mismatches, and keep the random weights).

        Checkpoints without any key under ``prefix`` do not concern this backbone and pass;
        relative-position tables may be missing (they start at zero); extra keys are left to
        the loader.
        """
        if not any(key.startswith(prefix) for key in state_dict):
            return
        params = dict(self.named_parameters())
        missing = [name for name in params
                   if prefix + name not in state_dict and 'rel_pos' not in name]
        mismatched = [
            f'{name}: checkpoint {tuple(state_dict[prefix + name].shape)}, model '
            f'{tuple(param.shape)}' for name, param in params.items()
            if prefix + name in state_dict and state_dict[prefix + name].shape != param.shape
        ]
        if missing or mismatched:
            timm_layout = any(key.startswith(prefix + 'blocks.') for key in state_dict)
            hint = (' It has timm key names: convert it with tools/model_converters/'
                    'kat_timm2mmrkan.py (a KAT) or vit2kat.py (a ViT/DeiT).' if timm_layout else '')
            raise ValueError(
                f'the checkpoint does not fit this {type(self).__name__} '
                f'({self.embed_dims} channels, {self.num_layers} blocks) under prefix '
                f'{prefix!r}: {len(missing)} missing keys {missing[:4]}, shape mismatches '
                f'{mismatched[:2]}.{hint}')

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
        x = self.drop_after_pos(x)

        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x, patch_resolution)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution))
        return tuple(outs)


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
        **kwargs: other :class:`KAT` arguments (``num_groups``, ``act_init``, ``frozen_stages``,
            ``norm_cfg``, ``init_cfg``, ...).
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
