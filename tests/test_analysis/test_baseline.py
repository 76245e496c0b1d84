"""KAN-free baselines: an RKAN model becomes its wrapped CNN, GR-KAN mixers become GELU MLPs."""
import os.path as osp

import pytest
import torch
from mmcv.cnn.bricks.transformer import FFN
from mmengine.config import Config

from mmrkan.analysis import build_baseline, build_task_model
from mmrkan.apis import ToolError
from mmrkan.models.layers.gr_kan import GRKAN
from mmrkan.models.layers.rkan_block import RKANBlock

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def config(path: str) -> Config:
    return Config.fromfile(osp.join(REPO, path))


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_kat_mixers_become_gelu_mlps_of_the_same_widths():
    cfg = config('configs/demo/kat-micro_shapes-imagenet-64px.py')
    kat, baseline = build_task_model(cfg), build_baseline(cfg)
    assert not any(isinstance(m, GRKAN) for m in baseline.modules())
    mlps = [m for m in baseline.modules() if isinstance(m, FFN)]
    assert len(mlps) == 4
    assert isinstance(mlps[0].layers[0][1], torch.nn.GELU)
    # Only the rational coefficients go: 2 rationals x (6 + 8 x 4) per block.
    assert num_params(kat) - num_params(baseline) == 4 * 76
    assert baseline(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_kat_segmentor_baseline_keeps_the_rest_of_the_model():
    cfg = config('configs/demo/upernet_kat-micro_shapes-ade20k-128x128.py')
    kat, baseline = build_task_model(cfg), build_baseline(cfg)
    assert type(baseline.decode_head) is type(kat.decode_head)
    assert num_params(kat) - num_params(baseline) == 76 * sum(
        isinstance(m, GRKAN) for m in kat.modules())


def test_rkan_becomes_the_wrapped_backbone():
    cfg = config('configs/rkan/rkanet-50_8xb32_in1k.py')
    cfg.model.backbone.backbone.depth = 18
    cfg.model.head.in_channels = 512
    rkan, baseline = build_task_model(cfg), build_baseline(cfg)
    assert type(baseline.backbone).__name__ == 'ResNet'
    assert not any(isinstance(m, RKANBlock) for m in baseline.modules())
    branch_params = sum(p.numel() for name, p in rkan.named_parameters() if '.branches.' in name)
    assert num_params(rkan) - num_params(baseline) == branch_params > 0
    assert num_params(baseline) == 11_689_512  # ResNet-18 ImageNet classifier


def test_a_model_without_kan_parts_has_no_baseline(tmp_path):
    resnet = tmp_path / 'resnet.py'
    resnet.write_text("_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']\n")
    with pytest.raises(ToolError, match='no KAN parts'):
        build_baseline(Config.fromfile(str(resnet)))
