"""BackboneLayerDecayOptimWrapperConstructor: layer-wise lr decay for detectors/segmentors."""
import pytest
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch import nn

from mmrkan.engine.optimizers import BackboneLayerDecayOptimWrapperConstructor
from mmrkan.models.backbones import KATDet
from mmrkan.registry import task_registry


class Detector(nn.Module):
    """A backbone and a head, as mmdet's detectors and mmseg's segmentors name them."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Sequential(nn.Conv2d(32, 8, 1), nn.LayerNorm([8, 1, 1]))


def _build(model: nn.Module, **paramwise_cfg):
    init_default_scope('mmdet')
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1),
            constructor='BackboneLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.5, **paramwise_cfg)))


def _detector() -> Detector:
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    return Detector(KATDet(arch=arch, img_size=32, patch_size=8, window_size=2,
                           global_attn_indexes=(1, ), use_rel_pos=True))


def test_lr_decays_with_depth_and_the_rest_of_the_model_gets_the_full_lr():
    wrapper = _build(_detector())
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    # 2 blocks: embeddings depth 0, block i depth i + 1, everything else depth 3; lr 0.5^(3 - d).
    assert groups['backbone.pos_embed']['lr'] == pytest.approx(0.125)
    assert groups['backbone.patch_embed.projection.weight']['lr'] == pytest.approx(0.125)
    assert groups['backbone.layers.0.kan.rational2.weight_denominator']['lr'] == \
        pytest.approx(0.25)
    assert groups['backbone.layers.1.attn.rel_pos_h']['lr'] == pytest.approx(0.5)
    assert groups['neck.0.weight']['lr'] == 1.0
    assert len(groups) == len(list(_detector().parameters()))


def test_weight_decay_rules_of_mmpretrains_constructor_apply():
    wrapper = _build(_detector(), norm_decay_mult=0.0,
                     custom_keys={'.pos_embed': dict(decay_mult=0.0)})
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    assert groups['backbone.pos_embed']['weight_decay'] == 0.0
    assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0
    assert groups['neck.1.weight']['weight_decay'] == 0.0
    # The rational coefficients are 2-D and decay, as in the KAT authors' runs.
    assert groups['backbone.layers.0.kan.rational1.weight_numerator']['weight_decay'] == 0.1
    assert groups['backbone.layers.0.kan.fc1.weight']['weight_decay'] == 0.1


def test_a_model_without_a_layered_backbone_is_a_clear_error():
    model = Detector(nn.Conv2d(3, 32, 1))
    with pytest.raises(TypeError, match='needs a model with a `backbone` that has '
                       '`get_layer_depth`.*backbone Conv2d'):
        _build(model)


def test_registered_under_its_own_name_in_mmdet_and_mmseg():
    for scope in ('mmdet', 'mmseg'):
        registry = task_registry(scope, 'OPTIM_WRAPPER_CONSTRUCTORS')
        assert registry.get('BackboneLayerDecayOptimWrapperConstructor') is \
            BackboneLayerDecayOptimWrapperConstructor
    # The constructors of the task libraries are untouched.
    assert task_registry('mmseg', 'OPTIM_WRAPPER_CONSTRUCTORS').get(
        'LayerDecayOptimizerConstructor') is not BackboneLayerDecayOptimWrapperConstructor
