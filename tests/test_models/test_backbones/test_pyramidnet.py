"""PyramidNet: both layouts of its authors, the RKAN paper's PyramidNet-101, RKAN on it."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

from mmrkan.models.backbones import PyramidNet
from zoo_utils import base_model, build, build_on_meta, in_millions, num_params


def _blocks(model: PyramidNet) -> list:
    return [block for name in model.res_layers for block in getattr(model, name)]


def _bottleneck_count(stage_blocks, stem, alpha, num_classes, stem_params) -> int:
    """Parameters of a bottleneck PyramidNet classifier, from the architecture's definition."""
    step = alpha / sum(stage_blocks)
    total, channels, width = stem_params, stem, float(stem)
    for _ in range(sum(stage_blocks)):
        width += step
        planes = int(round(width))
        # BN(in), 1x1, BN, 3x3, BN, 1x1 (x4), BN(4 planes)
        total += 2 * channels + channels * planes + 2 * planes + 9 * planes * planes
        total += 2 * planes + 4 * planes * planes + 8 * planes
        channels = 4 * planes
    return total + 2 * channels + channels * num_classes + num_classes


@pytest.mark.parametrize('depth,alpha', [(101, 270), (50, 200), (200, 300)])
def test_imagenet_layout_widths_grow_by_alpha_over_the_blocks(depth, alpha):
    with torch.device('meta'):
        model = PyramidNet(depth, alpha, out_indices=(0, 1, 2, 3))
    stage_blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 200: (3, 24, 36, 3)}[depth]
    assert [len(getattr(model, name)) for name in model.res_layers] == list(stage_blocks)
    blocks = _blocks(model)
    for index, block in enumerate(blocks, start=1):
        assert block.conv1.out_channels == round(64 + index * alpha / len(blocks))
        assert block.conv3.out_channels == 4 * block.conv1.out_channels
    assert model.out_channels == 4 * (64 + alpha)
    outs = model(torch.zeros(2, 3, 224, 224, device='meta'))
    assert [tuple(o.shape[2:]) for o in outs] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    stem_params = 3 * 64 * 49 + 2 * 64
    assert num_params(model) + 1000 * model.out_channels + 1000 == _bottleneck_count(
        stage_blocks, 64, alpha, 1000, stem_params)


@pytest.mark.parametrize('depth,alpha,block_type,per_stage,final',
                         [(110, 48, 'basic', 18, 64), (164, 270, 'bottleneck', 18, 4 * 286),
                          (20, 12, 'basic', 3, 28)])
def test_cifar_layout(depth, alpha, block_type, per_stage, final):
    model = PyramidNet(depth, alpha, layout='cifar', block_type=block_type, out_indices=(0, 1, 2))
    assert model.maxpool is None and model.conv1.kernel_size == (3, 3)
    assert [len(getattr(model, name)) for name in model.res_layers] == [per_stage] * 3
    blocks = _blocks(model)
    for index, block in enumerate(blocks, start=1):
        assert block.conv1.out_channels == round(16 + index * alpha / len(blocks))
    assert model.out_channels == final
    if depth == 20:
        outs = model(torch.randn(2, 3, 32, 32))
        assert [tuple(o.shape[1:]) for o in outs] == [(20, 32, 32), (24, 16, 16), (28, 8, 8)]


def _preactivation_reference(block, x):
    convs = [block.conv1, block.conv2] + ([block.conv3] if block.block_type == 'bottleneck'
                                          else [])
    norms = [block.bn1, block.bn2, block.bn3] + ([block.bn4] if len(convs) == 3 else [])
    out = norms[0](x)
    for index, conv in enumerate(convs):
        out = norms[index + 1](conv(out))
        if index < len(convs) - 1:
            out = F.relu(out)
    shortcut = F.avg_pool2d(x, 2, ceil_mode=True) if block.downsample is not None else x
    padding = torch.zeros(x.shape[0], out.shape[1] - shortcut.shape[1], *out.shape[2:])
    return out + torch.cat([shortcut, padding], 1)


@pytest.mark.parametrize('block_type,stride', [('bottleneck', 2), ('basic', 2), ('basic', 1)])
def test_block_is_preactivation_with_a_zero_padded_shortcut(block_type, stride):
    torch.manual_seed(0)
    depth = 11 if block_type == 'bottleneck' else 14
    model = PyramidNet(depth, 12, layout='cifar', block_type=block_type).eval()
    block = model.layer2[0] if stride == 2 else model.layer1[1]
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.weight.normal_()
                module.bias.normal_()
    x = torch.randn(2, block.bn1.num_features, 9, 9)
    out = block(x)
    assert out.shape[1] > x.shape[1]
    torch.testing.assert_close(out, _preactivation_reference(block, x))


def test_the_last_output_is_after_the_final_norm_and_relu():
    torch.manual_seed(0)
    model = PyramidNet(50, 48, out_indices=(2, 3)).eval()
    x = torch.randn(1, 3, 64, 64)
    stage3, stage4 = model(x)
    torch.testing.assert_close(stage4, F.relu(model.bn_final(model.layer4(stage3))))


def test_frozen_stages_and_norm_eval():
    model = PyramidNet(50, 48, frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1, model.layer2]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert model.bn_final.weight.requires_grad
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    everything = PyramidNet(50, 48, frozen_stages=4)
    everything.train()
    assert not any(p.requires_grad for p in everything.parameters())
    assert not everything.bn_final.training


@pytest.mark.parametrize('kwargs,message', [
    (dict(layout='tiny'), "layout='tiny' is not supported"),
    (dict(depth=77), 'depth=77 is not a depth of the ImageNet layout'),
    (dict(depth=50, block_type='basic'), 'depth 50 has bottleneck blocks'),
    (dict(depth=110, layout='cifar'), "block_type=None: the CIFAR layout needs one of"),
    (dict(depth=111, layout='cifar', block_type='bottleneck'), 'must be 9 n \\+ 2'),
    (dict(alpha=-1), 'alpha=-1 must be a non-negative number'),
    (dict(depth=50, out_indices=(4, )), r'out_indices=\(4,\) must be stage indices'),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PyramidNet(**kwargs)


def test_registered_in_every_task_registry():
    for registry in (MMDET_MODELS, MMSEG_MODELS, MMPRETRAIN_MODELS):
        assert registry.get('PyramidNet') is PyramidNet


@pytest.mark.parametrize('layout', ['imagenet', 'cifar'])
def test_rkan_adds_its_branch_before_the_final_norm(layout):
    torch.manual_seed(0)
    if layout == 'imagenet':
        cfg, size = dict(type='PyramidNet', depth=50, alpha=48), 64
    else:
        cfg, size = dict(type='PyramidNet', depth=20, alpha=12, layout='cifar',
                         block_type='basic'), 32
    model = build(dict(type='RKAN', backbone=cfg))
    backbone = model.backbone
    last = getattr(backbone, backbone.res_layers[-1])
    in_channels = last[0].bn1.num_features
    mid, out = in_channels // 2, backbone.out_channels
    assert num_params(model) - num_params(backbone) == (
        in_channels * mid + 54 + 2 * mid + mid * out + 45 + 2 * out)
    model.eval()
    x = torch.randn(2, 3, size, size)
    inputs = {}
    last.register_forward_pre_hook(lambda m, args: inputs.setdefault('x', args[0]))
    with torch.no_grad():
        (result, ) = model(x)
        branch = model.branches[str(len(backbone.res_layers) - 1)]
        stage = inputs['x']
        for block in last:  # the blocks, without the RKAN hooks of the stage
            stage = block(stage)
        expected = F.relu(backbone.bn_final(stage + branch.residual(inputs['x'])))
    torch.testing.assert_close(result, expected)


def test_paper_row_pyramidnet_101_on_cifar100():
    model = build_on_meta(base_model('pyramidnet-101', num_classes=100))
    count = num_params(model)
    assert count == 26_589_018 == _bottleneck_count((3, 4, 23, 3), 64, 270, 100,
                                                    3 * 64 * 49 + 2 * 64)
    assert in_millions(count) == 26.59
    logits = model(torch.zeros(1, 3, 128, 128, device='meta'), mode='tensor')
    assert logits.shape == (1, 100)


def test_classifier_base_builds_in_mmpretrain():
    model = build_on_meta(base_model('pyramidnet-101'))
    assert num_params(model) == 27_792_318
    assert model.head.fc.in_features == model.backbone.out_channels == 1336
