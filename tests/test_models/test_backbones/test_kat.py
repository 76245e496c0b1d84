"""KAT: the classification and segmentation backbone (mmpretrain's ViT with GR-KAN mixers)."""
import os.path as osp

import mmseg
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmseg.structures import SegDataSample

from mmrkan.models.backbones import KAT
from mmrkan.models.layers import KATBlock
from mmrkan.registry import task_registry

from kat_utils import REPO, build_model, num_params

# 4 blocks, 32 channels: 2 heads, 8 rational groups.
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=128)


@pytest.mark.parametrize('arch, dims, expected', [('tiny', 192, 5_718_328),
                                                   ('small', 384, 22_051_576),
                                                   ('base', 768, 86_568_568)])
def test_classifier_parameter_counts_equal_the_papers(arch, dims, expected):
    model = build_model(osp.join(REPO, f'configs/kat/kat-{arch}_8xb128_in1k.py'))
    assert type(model.backbone) is KAT and model.backbone.embed_dims == dims
    assert num_params(model) == expected == 144 * dims**2 + 2125 * dims + 1000 + 912


def test_blocks_follow_the_facts():
    kat = KAT(arch='tiny', drop_path_rate=0.1)
    assert len(kat.layers) == 12 and all(isinstance(b, KATBlock) for b in kat.layers)
    block = kat.layers[5]
    assert block.attn.num_heads == 3 and block.attn.qkv.bias is not None
    assert block.ln1.eps == block.ln2.eps == kat.ln1.eps == 1e-6
    assert block.kan.fc1.out_features == 4 * 192
    assert block.kan.rational1.num_groups == block.kan.rational2.num_groups == 8
    assert (block.kan.rational1.init, block.kan.rational2.init) == ('identity', 'swish')
    assert kat.layers[0].drop_path.__class__.__name__ == 'Identity'
    assert kat.layers[-1].drop_path.drop_prob == pytest.approx(0.1)
    assert kat.pos_embed.shape == (1, 197, 192)


def test_classification_output_is_the_normalised_class_token():
    torch.manual_seed(0)
    kat = KAT(arch=TINY_ARCH, img_size=32, patch_size=8)  # no dropout: train = eval
    x = torch.randn(2, 3, 32, 32)
    (cls_token, ) = kat(x)
    raw = KAT(arch=TINY_ARCH, img_size=32, patch_size=8, out_type='raw')
    raw.load_state_dict(kat.state_dict())
    (tokens, ) = raw(x)
    assert cls_token.shape == (2, 32) and tokens.shape == (2, 17, 32)
    torch.testing.assert_close(cls_token, tokens[:, 0])
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 17), atol=1e-5, rtol=0)


def test_featmap_outputs_for_segmentation_at_another_input_size():
    torch.manual_seed(0)
    kat = KAT(arch=TINY_ARCH, img_size=32, patch_size=8, out_indices=(0, 1, 2, 3),
              out_type='featmap', final_norm=False)
    outs = kat(torch.randn(2, 3, 48, 64))
    assert [o.shape for o in outs] == [(2, 32, 6, 8)] * 4


def test_position_embedding_is_resized_to_the_input_and_when_loading():
    torch.manual_seed(0)
    small = KAT(arch=TINY_ARCH, img_size=32, patch_size=8)
    with torch.no_grad():
        small.pos_embed.normal_()
    large = KAT(arch=TINY_ARCH, img_size=48, patch_size=8)
    large.load_state_dict(small.state_dict())  # 4x4 grid resized to 6x6 when loading
    torch.testing.assert_close(large.pos_embed,
                               resize_pos_embed(small.pos_embed, (4, 4), (6, 6), 'bicubic', 1))
    x = torch.randn(1, 3, 48, 48)
    torch.testing.assert_close(small(x)[0], large(x)[0])  # resized at forward time instead


def test_get_layer_depth_for_mmpretrains_layer_decay():
    kat = KAT(arch=TINY_ARCH)
    assert kat.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert kat.get_layer_depth('backbone.patch_embed.projection.weight', 'backbone.') == (0, 6)
    assert kat.get_layer_depth('backbone.layers.2.kan.rational2.weight_denominator',
                               'backbone.') == (3, 6)
    assert kat.get_layer_depth('backbone.ln1.weight', 'backbone.') == (5, 6)
    assert kat.get_layer_depth('head.layers.head.weight', 'backbone.') == (5, 6)


def test_classifier_trains_with_mmpretrains_layer_decay_constructor():
    model = build_model(
        osp.join(REPO, 'configs/kat/kat-tiny_8xb128_in1k.py'),
        backbone=dict(type='KAT', arch=TINY_ARCH, img_size=32, patch_size=8),
        head=dict(type='VisionTransformerClsHead', num_classes=10, in_channels=32),
        train_cfg=None)
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        constructor='LearningRateDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.5)))
    lrs = {g['param_name']: g['lr'] for g in wrapper.optimizer.param_groups}
    assert lrs['backbone.pos_embed'] == pytest.approx(0.5**5)
    assert lrs['backbone.layers.0.kan.rational1.weight_numerator'] == pytest.approx(0.5**4)
    assert lrs['head.layers.head.weight'] == 1.0
    loss = model(torch.randn(2, 3, 32, 32), mode='tensor').logsumexp(-1).mean()
    wrapper.backward(loss)
    assert all(p.grad is not None for p in model.parameters())
    wrapper.step()


def test_frozen_stages_stay_frozen_in_training_mode():
    kat = KAT(arch=TINY_ARCH, frozen_stages=2, drop_path_rate=0.1)
    assert kat.train() is kat
    assert not kat.patch_embed.projection.weight.requires_grad
    assert not kat.pos_embed.requires_grad
    assert not any(p.requires_grad for p in kat.layers[1].parameters())
    assert not kat.layers[1].training and kat.layers[2].training
    assert all(p.requires_grad for p in kat.layers[2].parameters())


def test_variance_preserving_init_is_passed_to_every_mixer():
    kat = KAT(arch=TINY_ARCH, variance_preserving_init=True, act_init='gelu')
    assert all(block.kan.variance_preserving_init for block in kat.layers)
    assert all(block.kan.rational2.init == 'gelu' for block in kat.layers)


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='gigantic'), r"arch='gigantic' is not supported; allowed: \[.*'small', 't', "
     r"'tiny'\] or a dict"),
    (dict(arch=dict(embed_dims=32)), 'custom arch must be a dict with the keys'),
    (dict(arch=dict(TINY_ARCH, num_heads=3)), 'embed_dims=32 must be divisible by num_heads=3'),
    (dict(arch=TINY_ARCH, num_groups=3), 'embed_dims=32 must be divisible by num_groups=3'),
    (dict(arch=TINY_ARCH, out_indices=(4, )), 'out_indices contains 4'),
    (dict(arch=TINY_ARCH, out_type='tokens'), "out_type='tokens' is not supported"),
    (dict(arch=TINY_ARCH, out_type='cls_token', with_cls_token=False), 'needs with_cls_token'),
    (dict(arch=TINY_ARCH, layer_cfgs=dict(window_size=2)), 'set with_cls_token=False'),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KAT(**kwargs)


def test_checkpoints_of_other_models_are_clear_errors():
    kat = KAT(arch=TINY_ARCH)
    wider = KAT(arch=dict(TINY_ARCH, embed_dims=64))
    with pytest.raises(ValueError, match=r'does not fit this KAT \(32 channels, 4 blocks\).*'
                       r"shape mismatches \['cls_token: checkpoint \(1, 1, 64\)"):
        kat.load_state_dict(wider.state_dict())
    deit = VisionTransformer(arch=TINY_ARCH)  # mmpretrain's layout: same names but MLP mixers
    with pytest.raises(ValueError, match=r"missing keys \['layers.0.kan.rational1"):
        kat.load_state_dict(deit.state_dict(), strict=False)
    with pytest.raises(ValueError, match='timm key names: convert it with .*kat_timm2mmrkan.py'):
        kat.load_state_dict({'blocks.0.norm1.weight': torch.ones(32)}, strict=False)
    # Inside a model, a checkpoint without keys of the backbone (e.g. only a head) passes.
    detector = torch.nn.ModuleDict(dict(backbone=kat))
    detector.load_state_dict({'head.weight': torch.ones(1)}, strict=False)
    with pytest.raises(ValueError, match="under prefix 'backbone.'"):
        detector.load_state_dict({'backbone.cls_token': torch.ones(1, 1, 32)}, strict=False)


def test_pretrained_init_with_a_wrong_checkpoint_fails_instead_of_warning(tmp_path):
    path = str(tmp_path / 'wider.pth')
    torch.save({'state_dict': KAT(arch=dict(TINY_ARCH, embed_dims=64)).state_dict()}, path)
    kat = KAT(arch=TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(ValueError, match='does not fit this KAT'):
        kat.init_weights()


def _mmseg_config(name: str) -> str:
    return osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', 'vit', name)


@pytest.mark.parametrize('arch', ['small', 'base'])
def test_upernet_parameter_count_is_deits_plus_the_rationals(arch):
    kat = build_model(osp.join(REPO, f'configs/kat/upernet_kat-{arch}_8xb2-160k_ade20k-512x512.py'))
    deit = build_model(_mmseg_config(
        f'vit_deit-{arch[0]}16_mln_upernet_8xb2-160k_ade20k-512x512.py'))
    assert type(kat.backbone) is KAT and kat.backbone.out_indices == [2, 5, 8, 11]
    # 12 blocks x 2 rationals x (6 + 8 x 4) coefficients, and the patch-embedding bias that
    # KAT (like timm's DeiT) has and mmseg's ViT drops; everything else is DeiT's.
    extra = 912 + kat.backbone.embed_dims
    assert num_params(kat.backbone) == num_params(deit.backbone) + extra
    assert num_params(kat) == num_params(deit) + extra
    assert abs(num_params(kat) / (num_params(deit) + 912) - 1) < 0.02


def test_upernet_trains_at_a_small_size():
    model = build_model(osp.join(REPO, 'configs/kat/upernet_kat-small_8xb2-160k_ade20k-512x512.py'))
    model.backbone.init_cfg = None
    samples = []
    for _ in range(2):  # 2 images: the pyramid pooling's BatchNorm sees 1x1 maps
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 150, (1, 64, 64))))
        sample.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64)))
        samples.append(sample)
    losses = model(torch.randn(2, 3, 64, 64), samples, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert torch.isfinite(total)
    assert model.backbone.layers[0].kan.rational1.weight_denominator.grad is not None


def test_registered_for_every_task():
    for scope in ('mmpretrain', 'mmseg', 'mmdet'):
        assert task_registry(scope).get('KAT') is KAT


def test_rational_settings_reach_every_mixer():
    kat = KAT(arch=TINY_ARCH, rational_order=(7, 6), rational1_init='random', act_init='identity',
              per_group_numerator=True)
    for block in kat.layers:
        assert block.kan.rational1.order == block.kan.rational2.order == (7, 6)
        assert (block.kan.rational1.init, block.kan.rational2.init) == ('random', 'identity')
        assert block.kan.rational2.weight_numerator.shape == (8, 8)
    # Per block: 2 rationals of 8 groups x (8 numerator + 6 denominator) coefficients.
    default = KAT(arch=TINY_ARCH)
    assert num_params(kat) - num_params(default) == 4 * 2 * (8 * 14 - (6 + 8 * 4))


def test_per_channel_rationals_have_one_group_per_channel():
    kat = KAT(arch=TINY_ARCH, num_groups='per_channel', per_group_numerator=True)
    kan = kat.layers[3].kan
    assert kan.rational1.weight_denominator.shape == (32, 4)
    assert kan.rational2.weight_numerator.shape == (128, 6)
    (feature, ) = kat(torch.randn(1, 3, 224, 224))
    assert feature.shape == (1, 32)


@pytest.mark.parametrize('kwargs, message', [
    (dict(rational_order=(4, 3)), r'rational_order=\(4, 3\) is not supported; allowed: \(3, 2\)'),
    (dict(act_init='xavier'), r"act_init='xavier' is not supported; allowed: \('identity', "
     r"'swish', 'gelu', 'random'\)"),
    (dict(rational1_init='gelu2'), "rational1_init='gelu2' is not supported"),
    (dict(num_groups='channels'), r"num_groups='channels' is not supported; allowed: a positive "
     r"int dividing the channels, or 'per_channel'"),
])
def test_unsupported_rational_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KAT(arch=TINY_ARCH, **kwargs)
