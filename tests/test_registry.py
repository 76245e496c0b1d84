import inspect

import pytest
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS

import mmrkan
from mmrkan.registry import register_model

REGISTRIES = {'mmdet': MMDET_MODELS, 'mmseg': MMSEG_MODELS, 'mmpretrain': MMPRETRAIN_MODELS}


def mmrkan_models(registry) -> set:
    return {name for name, cls in registry.module_dict.items() if cls.__module__.startswith('mmrkan.')}


def test_import_registers_into_all_three_registries():
    assert mmrkan.__version__
    registered = {scope: mmrkan_models(registry) for scope, registry in REGISTRIES.items()}
    assert {'GroupRational', 'KANConv2d'} <= registered['mmdet']
    assert registered['mmdet'] == registered['mmseg'] == registered['mmpretrain']


@pytest.mark.parametrize('scope', REGISTRIES)
def test_registered_class_is_the_same_object_everywhere(scope):
    cls = REGISTRIES[scope].get('GroupRational')
    assert cls is MMDET_MODELS.get('GroupRational')
    assert inspect.getmodule(cls).__name__.startswith('mmrkan.ops')


def test_unknown_scope_is_a_clear_error():
    with pytest.raises(ValueError, match=r"scopes=\['mmcls'\].*allowed"):
        register_model(scopes=('mmdet', 'mmcls'))
