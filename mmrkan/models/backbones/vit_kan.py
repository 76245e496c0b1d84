"""ViT + KAN: the KAT paper's comparison model, a ViT whose MLPs are B-spline KANs
(``docs/models.md``, "ViT + KAN")."""
from typing import Sequence, Union

from mmpretrain.models.backbones import VisionTransformer

from mmrkan.registry import register_model
from ..layers.kan_linear import BSplineKAN


@register_model()
class ViTKAN(VisionTransformer):
    """mmpretrain's ``VisionTransformer`` with each MLP replaced by a B-spline KAN.

    Every block's ``fc1 -> act -> drop -> fc2 -> drop`` becomes ``KANLinear -> drop ->
    KANLinear -> drop`` of the same widths (:class:`~mmrkan.models.layers.BSplineKAN`,
    efficient-KAN's layer); everything else, the residual, drop path and layer scale of the
    MLP branch included, is the parent's. The KAN layers keep their own (efficient-KAN)
    initialisation: a model-level ``init_cfg`` on ``Linear`` layers does not touch them.

    Args:
        arch: as mmpretrain's ``VisionTransformer`` (``'deit-tiny'``, ``'deit-small'``,
            ``'deit-base'`` for the paper's ViT-T/S/B).
        kan_cfg: :class:`~mmrkan.models.layers.KANLinear` arguments of both KAN layers
            (``grid_size``, ``spline_order``, ``enable_standalone_scale_spline``, ``bias``, ...;
            efficient-KAN's defaults when empty).
        drop_rate: dropout after the position embedding, in the attention and after each KAN
            layer, as the parent's ``drop_rate``.
        layer_cfgs: per-block overrides of the parent's layer arguments; the MLP's activation
            (``act_cfg``) and form (``ffn_type``, ``num_fcs``) have no KAN meaning and are refused.
        **kwargs: the other arguments of mmpretrain's ``VisionTransformer``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'deit-tiny',
                 kan_cfg: dict = dict(),
                 drop_rate: float = 0.,
                 layer_cfgs: Union[dict, Sequence[dict]] = dict(),
                 **kwargs) -> None:
        for layer_cfg in [layer_cfgs] if isinstance(layer_cfgs, dict) else layer_cfgs:
            refused = sorted({'act_cfg', 'ffn_type', 'num_fcs'} & set(layer_cfg))
            if refused:
                raise ValueError(f'ViTKAN: layer_cfgs sets {refused}: the MLP is a B-spline KAN '
                                 '(its activation is inside the KAN layers); set kan_cfg instead')
        super().__init__(arch=arch, drop_rate=drop_rate, layer_cfgs=layer_cfgs, **kwargs)
        self.kan_cfg = dict(kan_cfg)
        for layer in self.layers:
            # FFN keeps its residual, drop path and layer scale; its layers become the KAN.
            layer.ffn.layers = BSplineKAN(
                self.embed_dims,
                self.arch_settings['feedforward_channels'],
                drop_rate=drop_rate,
                **self.kan_cfg)
