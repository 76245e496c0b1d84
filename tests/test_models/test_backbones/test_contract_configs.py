"""Stock OpenMMLab configs with only the backbone type swapped build and train one iteration.

The configs are the libraries' own (mmpretrain's ViT-B, mmseg's ViT-B UperNet, mmdet's ResNet-50
Mask R-CNN with and without deformable convolutions), run on the generated data of
``mmrkan/testing`` at tiny image sizes. The only change is the backbone type: ``KAT`` for
``VisionTransformer``, ``RKAN(backbone=<the ResNet>)`` for ``ResNet``.
"""
import os.path as osp

import mmdet
import mmpretrain
import mmseg
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmrkan.models.backbones import KAT, RKAN
from mmrkan.testing.configs import tiny_training_config


def stock_config(package, name: str) -> Config:
    return Config.fromfile(osp.join(osp.dirname(package.__file__), '.mim', 'configs', name))


def was_trained(runner: Runner, param: torch.nn.Parameter) -> bool:
    """The optimizer stepped ``param``: it had a gradient (the runner drops gradients after the
    step; they may be zero, e.g. behind mmpretrain ViT heads, zero-initialised)."""
    state = runner.optim_wrapper.optimizer.state.get(param, {})
    return any(key in state for key in ('exp_avg', 'momentum_buffer'))


def train_one_iteration(cfg: Config, roots: dict, work_dir: str, min_side: int = 64) -> Runner:
    runner = Runner.from_cfg(tiny_training_config(cfg, roots, work_dir, min_side=min_side))
    runner.train()
    assert runner.iter == 1
    losses = {key: value.current() for key, value in runner.message_hub.log_scalars.items()
              if key.startswith('train/') and 'loss' in key}
    assert losses and all(value == value and abs(value) < 1e6 for value in losses.values()), \
        losses
    return runner


@pytest.fixture
def roots(shapes_coco, shapes_ade20k, shapes_imagenet) -> dict:
    return dict(coco=shapes_coco, ade20k=shapes_ade20k, imagenet=shapes_imagenet)


def test_mmpretrain_vit_config_with_kat(roots, tmp_path):
    cfg = stock_config(mmpretrain, 'vision_transformer/vit-base-p16_64xb64_in1k.py')
    cfg.model.backbone.type = 'KAT'
    runner = train_one_iteration(cfg, roots, str(tmp_path))
    backbone = runner.model.backbone
    assert type(backbone) is KAT and backbone.embed_dims == 768 and backbone.num_layers == 12
    assert was_trained(runner, backbone.layers[0].kan.rational1.weight_numerator)


def test_mmseg_vit_upernet_config_with_kat(roots, tmp_path):
    """mmseg's ViT-B UperNet (upernet_vit-b16_ln_mln.py): mmseg's argument names, and a
    ``pretrained`` checkpoint at the segmentor, here a partial one (the patch embedding, the
    position embedding of 224x224 inputs and the first block only)."""
    cfg = stock_config(mmseg, 'vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py')
    cfg.model.backbone.type = 'KAT'
    # The first block of a KAT-B (768 channels, 12 heads) for 224x224 inputs.
    source = KAT(arch=dict(embed_dims=768, num_layers=1, num_heads=12,
                           feedforward_channels=3072), img_size=224).state_dict()
    partial = {key: value for key, value in source.items()
               if key.startswith(('patch_embed.', 'pos_embed', 'cls_token', 'layers.0.'))}
    cfg.model.pretrained = str(tmp_path / 'kat-b_partial.pth')
    torch.save(dict(state_dict=partial), cfg.model.pretrained)
    runner = train_one_iteration(cfg, roots, str(tmp_path))
    backbone = runner.model.backbone
    assert type(backbone) is KAT and backbone.out_indices == [2, 5, 8, 11]
    assert backbone.pos_embed.shape == (1, 32 * 32 + 1, 768)  # resized from 14x14
    assert was_trained(runner, backbone.layers[0].kan.rational1.weight_numerator)


@pytest.mark.parametrize('name, min_side', [
    ('mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 64),
    # mmcv's deformable convolutions need stage-4 maps of at least their 3x3 kernel.
    ('dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py', 128),
])
def test_mmdet_resnet50_mask_rcnn_config_with_rkan(name, min_side, roots, tmp_path):
    cfg = stock_config(mmdet, name)
    cfg.model.backbone = dict(type='RKAN', backbone=cfg.model.backbone)
    runner = train_one_iteration(cfg, roots, str(tmp_path), min_side)
    backbone = runner.model.backbone
    assert type(backbone) is RKAN and backbone.backbone.depth == 50
    # mmdet's norm_eval=True: every BatchNorm, the branch's too, keeps its statistics.
    assert not any(m.training for m in backbone.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert was_trained(runner, backbone.branches['3'].conv1.weight)
