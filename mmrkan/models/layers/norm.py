"""``LN2d`` (LayerNorm over the channels of ``(B, C, H, W)`` maps) for mmdet and mmseg configs.

mmpretrain registers its ``LayerNorm2d`` as ``'LN2d'``; mmdet and mmseg have none, and ViTDet-style
necks and heads (``norm_cfg=dict(type='LN2d')``) need it from their own registries.
"""
from mmpretrain.models.utils import LayerNorm2d

from mmrkan.registry import task_registry

for _scope in ('mmdet', 'mmseg'):
    task_registry(_scope).register_module(name='LN2d', module=LayerNorm2d)

__all__ = ['LayerNorm2d']
