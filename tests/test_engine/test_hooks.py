"""KeepInitialisedKeysHook and DataLoadErrorHook's pipeline wrapper, on their own (the runs that
use them: tests/test_tools/test_finetune.py, test_data_checks.py)."""
from types import SimpleNamespace

import pytest
import torch
from mmcv.transforms import BaseTransform, Compose
from torch import nn

from mmrkan.engine import DataLoadError, KeepInitialisedKeysHook
from mmrkan.engine.hooks import name_failing_files


def test_listed_keys_of_another_shape_keep_the_models_initialisation():
    model = nn.Linear(2, 3)
    runner = SimpleNamespace(model=model, logger=SimpleNamespace(info=lambda message: None))
    other_classes = {'state_dict': {'module.weight': torch.zeros(4, 2), 'module.bias': torch.zeros(4)}}
    KeepInitialisedKeysHook(keys=['weight']).after_load_checkpoint(runner, other_classes)
    torch.testing.assert_close(other_classes['state_dict']['module.weight'], model.weight.detach())
    assert other_classes['state_dict']['module.bias'].shape == (4, )  # not listed: left to the fit check
    # Resuming the fine-tuning run: the shapes agree, the checkpoint's tensors load.
    resumed = {'state_dict': {'weight': torch.full((3, 2), 7.0)}}
    KeepInitialisedKeysHook(keys=['weight']).after_load_checkpoint(runner, resumed)
    assert (resumed['state_dict']['weight'] == 7).all()
    with pytest.raises(ValueError, match='keys'):
        KeepInitialisedKeysHook(keys='weight')


class LoadBroken(BaseTransform):
    def transform(self, results: dict) -> dict:
        raise OSError('image file is truncated')


class Crash(BaseTransform):
    def transform(self, results: dict) -> dict:
        raise KeyError('gt_bboxes')


def test_a_loading_transform_that_fails_names_the_files_other_errors_pass_through():
    dataset = SimpleNamespace(pipeline=Compose([LoadBroken()]), dataset=None)
    name_failing_files(dataset)
    name_failing_files(dataset)  # idempotent
    with pytest.raises(DataLoadError, match=r'^LoadBroken could not load a\.jpg, a\.png: OSError: image file is '
                                            r'truncated; tools/misc/check_dataset\.py CONFIG --decode'):
        dataset.pipeline(dict(img_path='a.jpg', seg_map_path='a.png'))
    assert len(dataset.pipeline.transforms) == 1  # still the Compose's
    wrapper = SimpleNamespace(dataset=SimpleNamespace(pipeline=Compose([Crash()])))
    name_failing_files(wrapper)  # the dataset inside a wrapper (RepeatDataset...)
    with pytest.raises(KeyError, match='gt_bboxes'):
        wrapper.dataset.pipeline(dict(img_path='a.jpg'))
