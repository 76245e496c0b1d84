"""KATDet: KAT as a ViTDet-style detection backbone, and the KATDet Mask R-CNN configs."""
import os.path as osp

import pytest
import torch
from mmpretrain.models.utils import resize_pos_embed

from mmrkan.models.backbones import KAT, KATDet
from mmrkan.models.necks import SimpleFeaturePyramid
from mmrkan.registry import task_registry

from kat_utils import REPO, build_model, num_params

TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=128)


def _tiny(**kwargs) -> KATDet:
    torch.manual_seed(0)
    kwargs = dict(dict(arch=TINY_ARCH, img_size=64, patch_size=8, window_size=3,
                       global_attn_indexes=(1, 3)), **kwargs)
    return KATDet(**kwargs).eval()


def test_vitdet_layout_for_the_small_arch():
    kat = KATDet(arch='small')
    assert [block.window_size for block in kat.layers] == [14, 14, 0] * 4
    assert kat.cls_token is None and not kat.final_norm and kat.out_type == 'featmap'
    assert kat.out_indices == [11]
    assert kat.pos_embed.shape == (1, 64 * 64, 384)  # stored for 1024x1024 inputs
    assert not hasattr(kat.layers[0].attn, 'rel_pos_h')
    assert kat.layers[-1].drop_path.drop_prob == pytest.approx(0.1)


@pytest.mark.parametrize('size, grid', [((64, 64), (8, 8)), ((50, 70), (7, 9)),
                                        ((24, 120), (3, 15))])
def test_any_input_size_works(size, grid):
    kat = _tiny()
    (out, ) = kat(torch.randn(2, 3, *size))
    assert out.shape == (2, 32, *grid)


def test_output_depends_on_the_window_layout():
    windowed, global_only = _tiny(), _tiny(global_attn_indexes=(0, 1, 2, 3))
    global_only.load_state_dict(windowed.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(windowed(x)[0], global_only(x)[0])


def test_relative_positions_option():
    kat = _tiny(use_rel_pos=True)
    assert kat.layers[0].attn.rel_pos_h.shape == (2 * 3 - 1, 16)  # windowed: the window
    assert kat.layers[1].attn.rel_pos_w.shape == (2 * 8 - 1, 16)  # global: the 64 / 8 grid
    with torch.no_grad():
        for name, param in kat.named_parameters():
            if 'rel_pos' in name:
                param.normal_()
    (out, ) = kat(torch.randn(1, 3, 40, 88))
    assert out.shape == (1, 32, 5, 11)
    out.sum().backward()
    assert kat.layers[1].attn.rel_pos_h.grad.abs().sum() > 0


def test_loads_a_224_backbone_dropping_the_class_row_and_resizing_the_grid():
    classifier = KAT(arch=TINY_ARCH, img_size=32, patch_size=8, final_norm=False)
    with torch.no_grad():
        classifier.pos_embed.normal_()
    state = {k: v for k, v in classifier.state_dict().items() if k != 'cls_token'}
    kat = _tiny()
    kat.load_state_dict(state)  # strict: every key used, none missing
    expected = resize_pos_embed(classifier.pos_embed[:, 1:], (4, 4), (8, 8), 'bicubic', 0)
    torch.testing.assert_close(kat.pos_embed, expected)


def test_a_checkpoint_without_relative_positions_loads_with_them_at_zero():
    source = _tiny()
    with torch.no_grad():
        source.pos_embed.normal_()
    kat = _tiny(use_rel_pos=True)
    kat.load_state_dict(source.state_dict(), strict=False)
    torch.testing.assert_close(kat.pos_embed, source.pos_embed)
    assert kat.layers[0].attn.rel_pos_h.abs().max() == 0


def test_layer_depth_for_the_lr_decay_constructor():
    kat = _tiny()
    assert kat.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert kat.get_layer_depth('backbone.layers.3.attn.qkv.weight', 'backbone.') == (4, 6)
    assert kat.get_layer_depth('neck.lateral_convs.0.conv.weight', 'backbone.') == (5, 6)


@pytest.mark.parametrize('kwargs, message', [
    (dict(global_attn_indexes=(1, 4)), r'global_attn_indexes=\(1, 4\): \[4\] are not blocks'),
    (dict(window_size=0), 'window_size=0 must be positive'),
    (dict(arch='gigantic'), "arch='gigantic' is not supported"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**kwargs)


def test_registered_in_mmdet():
    assert task_registry('mmdet').get('KATDet') is KATDet


@pytest.mark.parametrize('arch, paper_params', [('small', 44.5e6), ('base', 113.7e6)])
def test_mask_rcnn_parameter_count_is_within_2_percent_of_the_paper(arch, paper_params):
    config = f'configs/katdet/mask-rcnn_katdet-{arch}_simplefpn_3x_coco.py'
    model = build_model(osp.join(REPO, config))
    assert type(model.backbone) is KATDet and type(model.neck) is SimpleFeaturePyramid
    assert abs(num_params(model) / paper_params - 1) < 0.02, num_params(model)
