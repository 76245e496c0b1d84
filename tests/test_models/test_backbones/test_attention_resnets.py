"""ECA-Net, CBAM, SA-Net, SimAM, ELA and SENet: the plug-ins in the ResNets of mmdet and mmseg.

The paper rows are built from the classifier bases of configs/_base_/models on the meta device
and compared with the RKAN paper's parameter counts (docs/models.md).
"""
import copy

import pytest
import torch
from torch import nn

from zoo_utils import base_model, build, build_on_meta, in_millions, num_params

# Plug-in configs for tiny ResNets (stage widths 32, 64, 128, 256 after conv3).
TINY_PLUGINS = {
    'eca': dict(type='EfficientChannelAttention'),
    'cbam': dict(type='CBAM', ratio=4),
    'sa': dict(type='ShuffleAttention', groups=4),
    'simam': dict(type='SimAM'),
    'ela': dict(type='EfficientLocalAttention', arch='L'),
    'se': dict(type='SqueezeExcitation', ratio=4),
}
BASES = ['eca-resnet50', 'cbam-resnet50', 'sa-resnet50', 'simam-resnet50', 'ela-l-resnet50',
         'senet50']

# The RKAN paper's rows of these networks: (row, base, num_classes, depth, RKAN settings or
# None, parameters built, parameters printed in millions). The ELA-L rows are in ELA_ROWS.
ROWS = [
    ('ImageNet ECA-Net-50', 'eca-resnet50', 1000, 50, None, 25_557_118, 25.56),
    ('ImageNet RKAN-ECA-Net-50', 'eca-resnet50', 1000, 50, {}, 27_135_201, 27.14),
    ('ImageNet SA-Net-50', 'sa-resnet50', 1000, 50, None, 25_557_740, 25.56),
    ('ImageNet RKAN-SA-Net-50', 'sa-resnet50', 1000, 50, {}, 27_135_823, 27.14),
    ('ImageNet SimAM-50', 'simam-resnet50', 1000, 50, None, 25_557_032, 25.56),
    ('ImageNet RKAN-SimAM-50', 'simam-resnet50', 1000, 50, {}, 27_135_115, 27.14),
    ('ImageNet CBAM-50', 'cbam-resnet50', 1000, 50, None, 28_073_544, 28.07),
    ('ImageNet RKAN-CBAM-50', 'cbam-resnet50', 1000, 50, {}, 29_651_627, 29.65),
    ('ImageNet SENet-50', 'senet50', 1000, 50, None, 28_071_976, 28.07),
    ('ImageNet RKAN-SENet-50', 'senet50', 1000, 50, {}, 29_650_059, 29.65),
    ('CIFAR-100 ECA-Net-101', 'eca-resnet50', 100, 101, None, 42_705_231, 42.71),
    ('CIFAR-100 SA-Net-101', 'sa-resnet50', 100, 101, None, 42_706_584, 42.71),
]
# The ELA-L rows: the paper's counts leave out the GroupNorm parameters (2 C per block), as
# the thop profiler the RKAN authors count with does; the network has them.
ELA_ROWS = [
    ('ImageNet ELA-L-50', 1000, 50, None, 26_433_064, 26.40),
    ('ImageNet RKAN-ELA-L-50', 1000, 50, {}, 28_011_147, 27.98),
    ('CIFAR-100 ELA-L-101', 100, 101, None, 44_590_756, 44.53),
]


def _tiny_resnet(plugin: str, type_: str = 'mmdet.ResNet', **kwargs) -> dict:
    return dict(
        type=type_,
        depth=50,
        stem_channels=8,
        base_channels=8,
        plugins=[dict(cfg=TINY_PLUGINS[plugin], stages=(True, ) * 4, position='after_conv3')],
        **kwargs)


@pytest.mark.parametrize('plugin', TINY_PLUGINS)
@pytest.mark.parametrize('scope,backbone', [('mmdet', 'ResNet'), ('mmseg', 'ResNetV1c')])
def test_plugin_runs_in_every_block_of_the_task_resnets(plugin, scope, backbone):
    torch.manual_seed(0)
    model = build(_tiny_resnet(plugin, type_=backbone, out_indices=(0, 1, 2, 3)), scope)
    plugins = [m for name, m in model.named_modules() if name.endswith(f'.{plugin}')]
    assert len(plugins) == 16  # one in each of the 3 + 4 + 6 + 3 bottlenecks
    calls = []
    for module in plugins:
        module.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4),
                                              (2, 256, 2, 2)]
    assert len(calls) == 16


def test_the_plugin_output_is_the_block_output_before_the_shortcut():
    torch.manual_seed(0)
    model = build(_tiny_resnet('se', out_indices=(0, )))
    block = model.layer1[0]
    x = torch.randn(1, 8, 16, 16)
    model.eval()
    inner = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(block.relu(block.bn1(
        block.conv1(x))))))))
    expected = torch.relu(block.se(inner) + block.downsample(x))
    torch.testing.assert_close(block(x), expected)


def test_frozen_stages_and_norm_eval_of_the_family_cover_the_plugins():
    model = build(_tiny_resnet('ela', frozen_stages=1, norm_eval=True))
    model.train()
    assert not any(p.requires_grad for p in model.layer1[0].ela.parameters())
    assert all(p.requires_grad for p in model.layer2[0].ela.parameters())
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize('plugin', TINY_PLUGINS)
def test_rkan_wraps_the_attention_resnets(plugin):
    torch.manual_seed(0)
    cfg = _tiny_resnet(plugin, out_indices=(2, 3))
    with_branch = build(dict(type='RKAN', backbone=cfg))
    plain = build(cfg)
    plain.load_state_dict(with_branch.backbone.state_dict())
    # Stage 4 (128 -> 256 channels): 128 * 64 + 54 + 2 * 64 + 64 * 256 + 45 + 2 * 256.
    assert num_params(with_branch) - num_params(plain) == 8192 + 54 + 128 + 16384 + 45 + 512
    with_branch.eval()
    plain.eval()
    x = torch.randn(2, 3, 64, 64)
    outs, expected = with_branch(x), plain(x)
    torch.testing.assert_close(outs[0], expected[0])  # stage 3 has no branch
    assert not torch.allclose(outs[1], expected[1])
    branch_norm = with_branch.branches['3'].norm2
    nn.init.zeros_(branch_norm.weight)
    nn.init.zeros_(branch_norm.bias)
    torch.testing.assert_close(with_branch(x)[1], expected[1])


@pytest.mark.parametrize('base', BASES)
def test_classifier_base_builds_in_mmpretrain(base):
    model = build_on_meta(base_model(base))
    assert type(model.backbone).__name__ == 'ResNet'
    assert type(model.backbone).__module__.startswith('mmdet.')
    assert model.backbone.out_indices == (3, ) and not model.backbone.norm_eval
    logits = model(torch.zeros(2, 3, 224, 224, device='meta'), mode='tensor')
    assert logits.shape == (2, 1000)


@pytest.mark.parametrize('row,base,num_classes,depth,rkan,count,paper', ROWS,
                         ids=[row[0] for row in ROWS])
def test_paper_row_parameter_counts(row, base, num_classes, depth, rkan, count, paper):
    model = build_on_meta(base_model(base, num_classes, depth, rkan))
    assert num_params(model) == count
    assert in_millions(count) == paper


@pytest.mark.parametrize('row,num_classes,depth,rkan,count,paper', ELA_ROWS,
                         ids=[row[0] for row in ELA_ROWS])
def test_ela_rows_match_the_paper_without_the_groupnorm_parameters(row, num_classes, depth, rkan,
                                                                  count, paper):
    model = build_on_meta(base_model('ela-l-resnet50', num_classes, depth, rkan))
    assert num_params(model) == count
    assert in_millions(count) != paper
    groupnorm = count - num_params(model, leave_out=(nn.GroupNorm, ))
    blocks_channels = {50: 15_104, 101: 32_512}[depth]  # sum of the bottleneck output widths
    assert groupnorm == 2 * blocks_channels
    assert in_millions(count - groupnorm) == paper


def test_senet_is_mmpretrain_seresnet_without_se_biases():
    ours = build_on_meta(base_model('senet50'))
    # mmpretrain's ResNets do not build on the meta device (their drop-path rates call item()).
    mmpretrain_seresnet = build(
        dict(type='SEResNet', depth=50, out_indices=(3, ), se_ratio=16), 'mmpretrain')
    assert num_params(mmpretrain_seresnet) - num_params(ours.backbone) == 16_048
    assert all(m.bias is None for m in ours.backbone.modules()
               if type(m).__name__ == 'SqueezeExcitation' for m in (m.fc1, m.fc2))


def test_simam_resnet_has_the_parameters_of_mmpretrain_resnet():
    ours = build_on_meta(base_model('simam-resnet50'))
    resnet = build(dict(type='ResNet', depth=50, out_indices=(3, )), 'mmpretrain')
    assert num_params(ours.backbone) == num_params(resnet) == 23_508_032
    assert [name for name, _ in ours.backbone.named_parameters()
            ] == [name for name, _ in resnet.named_parameters()]


def test_plugins_need_bottlenecks():
    cfg = copy.deepcopy(_tiny_resnet('se'))
    cfg['depth'] = 18
    with pytest.raises(AssertionError, match='Not implemented yet'):
        build(cfg)
