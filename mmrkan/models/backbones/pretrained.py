"""The deprecated ``pretrained`` argument of OpenMMLab backbones, for KAT and RKAN.

mmdet's and mmseg's ResNet and mmseg's VisionTransformer still accept ``pretrained=PATH`` and turn
it into ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` with a deprecation warning; mmseg's
``EncoderDecoder`` passes its own ``pretrained`` to the backbone that way. KAT does the same, with
mmseg's VisionTransformer's warning; RKAN hands ``pretrained`` to a wrapped backbone that takes it
and converts it here for one that does not (mmpretrain's), so stock configs keep working with the
type swapped.
"""
import warnings
from typing import Optional, Union

# The libraries' own message (mmdet's ResNet, mmseg's VisionTransformer).
PRETRAINED_DEPRECATION = 'DeprecationWarning: pretrained is deprecated, please use "init_cfg" instead'


def pretrained_init_cfg(pretrained: Optional[str],
                        init_cfg: Optional[Union[dict, list]]) -> Optional[Union[dict, list]]:
    """``init_cfg``, or the ``Pretrained`` init of ``pretrained`` (with the deprecation warning).

    Raises:
        TypeError: ``pretrained`` is neither a path nor None (as the libraries).
        ValueError: both are given (the libraries assert).
    """
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'pretrained must be a str or None, got {pretrained!r}')
    if init_cfg:
        raise ValueError(f'pretrained={pretrained!r} and init_cfg={init_cfg!r} cannot be set at '
                         'the same time: give init_cfg=dict(type=\'Pretrained\', checkpoint=...) '
                         'alone')
    warnings.warn(PRETRAINED_DEPRECATION)
    return dict(type='Pretrained', checkpoint=pretrained)
