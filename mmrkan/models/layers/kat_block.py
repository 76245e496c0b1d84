"""The KAT transformer block, shared by the KAT classifier/segmentation backbone and KATDet."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmpretrain.models.backbones.vit_sam import (get_rel_pos, window_partition,
                                                 window_unpartition)
from mmpretrain.models.utils import LayerScale, MultiheadAttention, build_norm_layer
from torch import nn

from mmrkan.ops.group_rational import DEFAULT_ORDER
from .gr_kan import GRKAN


# The activations of ViT configs (``act_cfg``) that a rational can start as: the GR-KAN mixer
# replaces the MLP's fixed activation by a learnable one initialised to it.
ACT_CFG_INITS = {'GELU': 'gelu', 'SiLU': 'swish', 'Swish': 'swish'}


def rational_init(act_init: Optional[str] = None, act_cfg: Optional[dict] = None) -> str:
    """The initial function of the mixer's second rational from KAT's ``act_init`` and the
    ``act_cfg`` of ViT configs (its activation), which must agree when both are given; 'swish'
    (the released KAT models) when neither is."""
    if act_cfg is None:
        return 'swish' if act_init is None else act_init
    act_type = act_cfg.get('type') if isinstance(act_cfg, dict) else None
    if act_type not in ACT_CFG_INITS:
        raise ValueError(f'act_cfg={act_cfg!r}: the GR-KAN mixer can start as the activation '
                         f'types {sorted(ACT_CFG_INITS)} only')
    if act_init is not None and act_init != ACT_CFG_INITS[act_type]:
        raise ValueError(f'act_cfg={act_cfg!r} and act_init={act_init!r} disagree: give one of '
                         'them (act_cfg type GELU starts the rational as gelu, SiLU/Swish as swish)')
    return ACT_CFG_INITS[act_type]


class RelPosMultiheadAttention(MultiheadAttention):
    """mmpretrain's multi-head attention, optionally with decomposed relative positions.

    The relative position terms are those of MViTv2/ViTDet: for a query at (i, j) and a key at
    (k, l) the logit gains ``q . Rh[i - k] + q . Rw[j - l]``, with per-axis tables ``rel_pos_h``
    and ``rel_pos_w`` (zero-initialised, so a model converted from weights without them starts
    as plain attention). They are passed to ``scaled_dot_product_attention`` as an additive mask.

    Args:
        embed_dims: channels.
        num_heads: attention heads; must divide ``embed_dims``.
        rel_pos_size: ``(h, w)`` token grid the tables are sized for; ``None`` (default) disables
            relative positions. Other grid sizes interpolate the tables linearly.
        **kwargs: the other arguments of mmpretrain's ``MultiheadAttention``.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 rel_pos_size: Optional[Tuple[int, int]] = None,
                 **kwargs) -> None:
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims={embed_dims} must be divisible by '
                             f'num_heads={num_heads}')
        super().__init__(embed_dims, num_heads, **kwargs)
        self.use_rel_pos = rel_pos_size is not None
        if self.use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, self.head_dims))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, self.head_dims))

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """``x``: ``(B, N, C)`` tokens; ``hw_shape``: their ``(H, W)`` grid, ``H * W == N``,
        needed only with relative positions."""
        if not self.use_rel_pos:
            return super().forward(x)
        B, N, _ = x.shape
        H, W = hw_shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # rel_h[b, n, i, j, k] = q(i, j) . Rh[i - k], broadcast over the key column l.
        grid_q = q.reshape(B, self.num_heads, H, W, self.head_dims)
        rel_h = torch.einsum('bnhwc,hkc->bnhwk', grid_q, get_rel_pos(H, H, self.rel_pos_h))
        rel_w = torch.einsum('bnhwc,wkc->bnhwk', grid_q, get_rel_pos(W, W, self.rel_pos_w))
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, self.num_heads, N, N)
        bias = bias.to(q.dtype)  # SDPA wants the mask in the query's (autocast) dtype
        attn_drop = self.attn_drop if self.training else 0.
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=attn_drop)
        x = self.proj(x.transpose(1, 2).reshape(B, N, self.embed_dims))
        return self.out_drop(self.gamma1(self.proj_drop(x)))


class KATBlock(BaseModule):
    """Pre-norm ViT block with a GR-KAN channel mixer.

    ``x = x + drop_path(attn(ln1(x)))``, then ``x = x + drop_path(kan(ln2(x)))``; with
    ``layer_scale_init_value > 0`` both branches are scaled by a learnable per-channel
    ``LayerScale`` (``attn.gamma1``, ``gamma2``) before the residual sum, as in mmpretrain's
    ``TransformerEncoderLayer``.

    With ``window_size > 0`` attention runs inside non-overlapping ``window_size`` squares of the
    token grid (ViTDet), the grid being zero-padded up to a multiple of the window, so any input
    size works. Windowed attention needs a pure patch-token grid (no class token).

    Args:
        embed_dims: channels ``D``.
        num_heads: attention heads.
        feedforward_channels: hidden channels of the GR-KAN mixer.
        num_groups: channel groups of the mixer's rationals (an int, or ``'per_channel'``).
        act_init: initial function of the mixer's second rational (default ``'swish'``, or the
            one ``act_cfg`` names).
        act_cfg: the activation of ViT configs (``dict(type='GELU')``), accepted with its meaning
            for the mixer: the rational starts as it (GELU: ``'gelu'``, SiLU/Swish: ``'swish'``).
        num_fcs: linear layers of the mixer; 2, the only value GR-KAN has (a ViT setting).
        ffn_type: the channel mixer of mmpretrain's ViT layers; ``'origin'`` (its MLP, here
            GR-KAN) is the only value (``'swiglu_fused'`` has no GR-KAN form).
        layer_scale_init_value: initial value of the LayerScale of both branches; 0 (default)
            for none.
        drop_rate: dropout after the attention projection and inside the mixer.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of both residual branches.
        qkv_bias: bias of the qkv projection.
        norm_cfg: normalisation of ``ln1`` and ``ln2``.
        window_size: attention window in tokens; 0 (default) for global attention.
        rel_pos_size: token grid of the relative position tables (the window for a windowed
            block); ``None`` (default) for no relative positions.
        variance_preserving_init: variance-preserving initialisation of the mixer's linears,
            see :class:`GRKAN`.
        rational_order: ``(m, n)`` of the mixer's rationals, see :class:`GRKAN`.
        rational1_init: initial function of the mixer's first rational (default identity).
        per_group_numerator: one numerator per group in the mixer's rationals.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 num_groups: Union[int, str] = 8,
                 act_init: Optional[str] = None,
                 act_cfg: Optional[dict] = None,
                 num_fcs: int = 2,
                 ffn_type: str = 'origin',
                 layer_scale_init_value: float = 0.,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 window_size: int = 0,
                 rel_pos_size: Optional[Tuple[int, int]] = None,
                 variance_preserving_init: bool = False,
                 rational_order: Sequence[int] = DEFAULT_ORDER,
                 rational1_init: str = 'identity',
                 per_group_numerator: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if window_size < 0:
            raise ValueError(f'window_size={window_size} must be >= 0 (0: global attention)')
        if num_fcs != 2:
            raise ValueError(f'num_fcs={num_fcs}: the GR-KAN mixer has 2 linear layers, no other '
                             'count is supported')
        if ffn_type != 'origin':
            raise ValueError(f'ffn_type={ffn_type!r}: the channel mixer is GR-KAN, the form of '
                             "ffn_type='origin' (the MLP); no other type is supported")
        self.window_size = window_size
        self.ln1 = build_norm_layer(norm_cfg, embed_dims)
        # Stochastic depth is applied here, on whole images, not inside the attention, which
        # sees windows as separate samples.
        self.attn = RelPosMultiheadAttention(
            embed_dims,
            num_heads,
            rel_pos_size=rel_pos_size,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            qkv_bias=qkv_bias,
            layer_scale_init_value=layer_scale_init_value)
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)
        self.kan = GRKAN(
            embed_dims,
            feedforward_channels,
            num_groups=num_groups,
            act_init=rational_init(act_init, act_cfg),
            drop_rate=drop_rate,
            variance_preserving_init=variance_preserving_init,
            rational_order=rational_order,
            rational1_init=rational1_init,
            per_group_numerator=per_group_numerator)
        self.gamma2 = (LayerScale(embed_dims, layer_scale_init_value)
                       if layer_scale_init_value > 0 else nn.Identity())
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """``x``: ``(B, N, C)`` tokens; ``hw_shape``: their ``(H, W)`` grid when they are pure
        patch tokens (needed by windowed attention and relative positions)."""
        if self.window_size > 0:
            x = x + self.drop_path(self._window_attention(self.ln1(x), hw_shape))
        else:
            x = x + self.drop_path(self.attn(self.ln1(x), hw_shape))
        return x + self.drop_path(self.gamma2(self.kan(self.ln2(x))))

    def _window_attention(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        size = self.window_size
        windows, padded_hw = window_partition(x.view(B, *hw_shape, C), size)
        windows = self.attn(windows.view(-1, size * size, C), (size, size))
        return window_unpartition(windows.view(-1, size, size, C), size, padded_hw,
                                  hw_shape).view(B, N, C)
