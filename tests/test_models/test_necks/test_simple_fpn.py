"""SimpleFeaturePyramid: ViTDet's simple feature pyramid with LN2d."""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.models.utils import LayerNorm2d

from mmrkan.models.necks import SimpleFeaturePyramid
from mmrkan.registry import task_registry


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')  # LN2d is looked up in the default scope's registry


def test_five_levels_at_strides_4_to_64_from_one_stride_16_map():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    x = torch.randn(2, 32, 6, 10)
    outs = neck((torch.randn(2, 32, 6, 10), x))  # only the last backbone output is used
    assert [o.shape for o in outs] == [(2, 16, 24, 40), (2, 16, 12, 20), (2, 16, 6, 10),
                                       (2, 16, 3, 5), (2, 16, 2, 3)]
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])


def test_layers_follow_vitdet():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    up4, up2, same, down2 = neck.rescales
    assert [type(m).__name__ for m in up4] == ['ConvTranspose2d', 'LayerNorm2d', 'GELU',
                                               'ConvTranspose2d']
    assert up4[-1].out_channels == 8 and up2.out_channels == 16
    assert isinstance(same, torch.nn.Identity) and isinstance(down2, torch.nn.MaxPool2d)
    for conv in (*neck.lateral_convs, *neck.output_convs):
        assert isinstance(conv.norm, LayerNorm2d) and conv.norm.eps == 1e-6
        assert conv.conv.bias is None and not conv.with_activation
    assert neck.output_convs[0].conv.kernel_size == (3, 3)


def test_identity_level_is_the_convolved_input():
    neck = SimpleFeaturePyramid(in_channels=16, out_channels=16, scale_factors=(1.0, ),
                                num_outs=1)
    x = torch.randn(1, 16, 4, 4)
    (out, ) = neck((x, ))
    torch.testing.assert_close(out, neck.output_convs[0](neck.lateral_convs[0](x)))


def test_backward_reaches_the_input():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    x = torch.randn(1, 32, 4, 4, requires_grad=True)
    sum(o.sum() for o in neck((x, ))).backward()
    assert x.grad.abs().sum() > 0


def test_ln2d_builds_from_mmdet_and_mmseg_configs():
    for scope in ('mmdet', 'mmseg'):
        assert task_registry(scope).get('LN2d') is LayerNorm2d
    assert task_registry('mmdet').get('SimpleFeaturePyramid') is SimpleFeaturePyramid


@pytest.mark.parametrize('kwargs, message', [
    (dict(scale_factors=(4.0, 3.0)), 'must be a decreasing subset'),
    (dict(scale_factors=(1.0, 2.0)), 'must be a decreasing subset'),
    (dict(num_outs=3), 'num_outs=3 must be >= len'),
    (dict(in_channels=30), 'in_channels=30 must be divisible by 4'),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleFeaturePyramid(**dict(dict(in_channels=32), **kwargs))
