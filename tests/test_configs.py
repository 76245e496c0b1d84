"""Every config under configs/ builds and trains one iteration on generated data on the CPU."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmrkan.testing.configs import tiny_training_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p.split(osp.sep))


def test_configs_exist():
    assert CONFIGS, 'no configs found under configs/'


@pytest.mark.parametrize('config_path', CONFIGS, ids=[osp.relpath(p, osp.join(REPO, 'configs')) for p in CONFIGS])
def test_config_trains_one_iteration(config_path, shapes_coco, shapes_ade20k, shapes_imagenet, tmp_path):
    cfg = Config.fromfile(config_path)
    assert cfg.get('custom_imports', {}).get('imports') == ['mmrkan'], 'configs must import mmrkan'
    assert cfg.default_scope in ('mmdet', 'mmseg', 'mmpretrain')
    roots = dict(coco=shapes_coco, ade20k=shapes_ade20k, imagenet=shapes_imagenet)
    runner = Runner.from_cfg(tiny_training_config(cfg, roots, str(tmp_path)))
    runner.train()
    assert runner.iter == 1
    losses = runner.message_hub.log_scalars
    loss_keys = [k for k in losses if k.startswith('train/') and 'loss' in k]
    assert loss_keys, f'no training loss was logged: {sorted(losses)}'
    for key in loss_keys:
        value = losses[key].current()
        assert value == value and abs(value) < 1e6, f'{key} = {value}'
