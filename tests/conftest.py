"""Shared fixtures: small generated datasets (made once per test session) and CPU-friendly settings."""
import os
import os.path as osp

import pytest
import torch

from mmrkan.testing import make_ade20k_style, make_coco_style, make_imagenet_style

# CI runs tests in parallel workers on 2 cores: one thread per process (and per tool subprocess)
# avoids oversubscription, which slows the tiny models here by 10x.
os.environ.setdefault('OMP_NUM_THREADS', '1')
torch.set_num_threads(1)


@pytest.fixture(scope='session')
def shapes_coco(tmp_path_factory) -> str:
    return make_coco_style(str(tmp_path_factory.mktemp('shapes_coco')), num_train=8, num_val=4,
                           image_size=(96, 128))


@pytest.fixture(scope='session')
def shapes_ade20k(tmp_path_factory) -> str:
    return make_ade20k_style(str(tmp_path_factory.mktemp('shapes_ade20k')), num_train=4, num_val=2,
                             image_size=(96, 128))


@pytest.fixture(scope='session')
def shapes_imagenet(tmp_path_factory) -> str:
    return make_imagenet_style(str(tmp_path_factory.mktemp('shapes_imagenet')), num_train_per_class=2,
                               num_val_per_class=1, image_size=(64, 64))


@pytest.fixture(scope='session')
def repo_root() -> str:
    return osp.dirname(osp.dirname(osp.abspath(__file__)))
