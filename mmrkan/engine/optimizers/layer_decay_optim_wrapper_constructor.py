"""Layer-wise learning-rate decay for detectors and segmentors with a ViT-like backbone."""
from functools import partial
from typing import Callable, List, Optional

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from torch import nn

from mmrkan.registry import register_optim_wrapper_constructor


@register_optim_wrapper_constructor(scopes=('mmdet', 'mmseg'))
class BackboneLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-wise lr decay for models whose ``backbone`` has ``get_layer_depth``.

    mmpretrain's constructor needs ``get_layer_depth`` on the whole model, which mmpretrain
    classifiers have and mmdet detectors or mmseg segmentors do not. This one asks the backbone
    (e.g. :class:`~mmrkan.models.KAT`, :class:`~mmrkan.models.KATDet`): with ``L`` blocks and
    ``paramwise_cfg.layer_decay_rate = r``, block ``i`` gets ``lr * r ** (L - i)``, the patch
    and position embeddings ``lr * r ** (L + 1)``, and every parameter outside the backbone
    (neck, heads) the full ``lr``. The other ``paramwise_cfg`` keys (``norm_decay_mult``,
    ``bias_decay_mult``, ``flat_decay_mult``, ``custom_keys`` with ``decay_mult``) act as in
    mmpretrain's constructor.

    Registered in mmdet and mmseg under a name of its own: mmdet's and mmseg's
    ``LearningRateDecayOptimizerConstructor`` and mmseg's ``LayerDecayOptimizerConstructor``
    are other classes.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        if get_layer_depth is None:  # the top-level call, on the whole model
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(f'{type(self).__name__} needs a model with a `backbone` that has '
                                f'`get_layer_depth` (e.g. KAT, KATDet); got '
                                f'{type(module).__name__} with backbone '
                                f'{type(backbone).__name__}')
            get_layer_depth = partial(backbone.get_layer_depth, prefix='backbone.')
        super().add_params(params, module, prefix, get_layer_depth=get_layer_depth, **kwargs)
