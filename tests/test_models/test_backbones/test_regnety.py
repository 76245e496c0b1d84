"""RegNetY: torchvision's regnet_y_* layer for layer, the RKAN paper's RegNetY rows, RKAN on it."""
import re
from unittest import mock

import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn
from torchvision.models import regnet as tv_regnet

from mmrkan.models.backbones import RKAN, RegNetY
from mmrkan.models.backbones.regnety import REGNETY_ARCHS
from zoo_utils import base_model, build, build_on_meta, in_millions, num_params

# Our arch name -> torchvision's builder.
TORCHVISION_BUILDERS = {
    'regnety_400mf': 'regnet_y_400mf',
    'regnety_800mf': 'regnet_y_800mf',
    'regnety_1.6gf': 'regnet_y_1_6gf',
    'regnety_3.2gf': 'regnet_y_3_2gf',
    'regnety_8gf': 'regnet_y_8gf',
    'regnety_16gf': 'regnet_y_16gf',
    'regnety_32gf': 'regnet_y_32gf',
    'regnety_128gf': 'regnet_y_128gf',
}
# (row, base, num_classes, RKAN settings or None, parameters built, printed in millions).
ROWS = [
    ('ImageNet RegNetY-3.2GF', 'regnety-3.2gf', 1000, None, 19_436_338, 19.44),
    ('ImageNet RKAN-RegNetY-3.2GF', 'regnety-3.2gf', 1000, {}, 20_041_381, 20.04),
    ('CIFAR-100 RegNetY-32GF', 'regnety-32gf', 100, None, 141_705_070, 141.71),
    ('CIFAR-100 RKAN-RegNetY-32GF', 'regnety-32gf', 100, {}, 145_266_369, 145.27),
    ('Tiny ImageNet RegNetY-32GF', 'regnety-32gf', 200, None, 142_076_370, 142.08),
    ('Tiny ImageNet RKAN-RegNetY-32GF', 'regnety-32gf', 200, {}, 145_637_669, 145.64),
    ('Tiny ImageNet RegNetY-8GF', 'regnety-8gf', 200, None, 37_767_872, 37.77),
    ('Tiny ImageNet RKAN-RegNetY-8GF (r 1)', 'regnety-8gf', 200, dict(reduce_factor=1),
     40_382_947, 40.38),
]
# torchvision's ImageNet classifiers (the same backbones with a 1000-class linear head).
TORCHVISION_COUNTS = {
    'regnety-800mf': 6_432_512,
    'regnety-3.2gf': 19_436_338,
    'regnety-8gf': 39_381_472,
    'regnety-32gf': 145_046_770,
}


def _torchvision_key(key: str) -> str:
    """A key of torchvision's RegNet state dict in RegNetY's layout (the head excluded)."""
    key = key.replace('stem.0.', 'conv1.').replace('stem.1.', 'bn1.')
    match = re.fullmatch(r'trunk_output\.block(\d+)\.block\d+-(\d+)\.(.+)', key)
    if match is None:
        return key
    stage, block, rest = match.groups()
    for old, new in (('proj.0.', 'downsample.0.'), ('proj.1.', 'downsample.1.'),
                     ('f.a.0.', 'conv1.'), ('f.a.1.', 'bn1.'), ('f.b.0.', 'conv2.'),
                     ('f.b.1.', 'bn2.'), ('f.se.', 'se.'), ('f.c.0.', 'conv3.'),
                     ('f.c.1.', 'bn3.')):
        rest = rest.replace(old, new)
    return f'layer{stage}.{block}.{rest}'


def _torchvision_on_meta(arch: str) -> nn.Module:
    """torchvision's model of ``arch`` on the meta device (its width formula runs on the CPU)."""
    with mock.patch.object(tv_regnet, '_regnet', lambda params, *args, **kwargs: params):
        block_params = getattr(tv_regnet, TORCHVISION_BUILDERS[arch])()
    with torch.device('meta'):
        return tv_regnet.RegNet(block_params)


@pytest.mark.parametrize('arch', sorted(REGNETY_ARCHS))
def test_same_layers_as_torchvision(arch):
    with torch.device('meta'):
        ours = RegNetY(arch)
    theirs = {
        _torchvision_key(key): value.shape
        for key, value in _torchvision_on_meta(arch).state_dict().items()
        if not key.startswith('fc.')
    }
    assert {key: value.shape for key, value in ours.state_dict().items()} == theirs


def test_outputs_equal_torchvision_with_copied_weights():
    torch.manual_seed(0)
    theirs = tv_regnet.regnet_y_800mf().eval()
    # torchvision leaves the BN statistics and SE biases at their initial values: make them count.
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
    ours = RegNetY('regnety_800mf', out_indices=(0, 1, 2, 3)).eval()
    ours.load_state_dict({
        _torchvision_key(key): value
        for key, value in theirs.state_dict().items() if not key.startswith('fc.')
    })
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = []
        feature = theirs.stem(x)
        for stage in theirs.trunk_output:
            feature = stage(feature)
            expected.append(feature)
        outs = ours(x)
        logits = theirs.fc(outs[-1].mean((2, 3)))
    assert len(outs) == 4
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref)
    torch.testing.assert_close(logits, theirs(x))


def test_stage_widths_strides_and_out_indices():
    model = RegNetY('regnety_3.2gf', out_indices=(0, 1, 2, 3))
    assert model.stage_widths == [72, 216, 576, 1512]
    assert model.res_layers == ['layer1', 'layer2', 'layer3', 'layer4']
    assert [len(getattr(model, name)) for name in model.res_layers] == [2, 5, 13, 1]
    outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 72, 16, 16), (1, 216, 8, 8), (1, 576, 4, 4),
                                              (1, 1512, 2, 2)]
    last = RegNetY('regnety_400mf', out_indices=(-1, ))
    assert last.out_indices == (3, ) and len(last(torch.randn(2, 3, 32, 32))) == 1


def test_se_squeeze_width_follows_the_block_input():
    model = RegNetY('regnety_800mf')
    first, second = model.layer2[0], model.layer2[1]  # 64 -> 144, then 144 -> 144
    assert first.se.fc1.out_channels == 16 and second.se.fc1.out_channels == 36
    assert first.se.fc1.bias is not None


def test_frozen_stages_and_norm_eval():
    model = RegNetY('regnety_400mf', frozen_stages=1, norm_eval=True)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    unfrozen = RegNetY('regnety_400mf', frozen_stages=1)
    unfrozen.train()
    assert not unfrozen.layer1[0].bn1.training and unfrozen.layer2[0].bn1.training


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='regnety_4gf'), "arch='regnety_4gf' is not a RegNetY"),
    (dict(arch=dict(depth=10, w0=24, wa=24.0)), 'must be a name of'),
    (dict(arch=dict(depth=10, w0=20, wa=24.0, wm=2.5, group_width=8)), 'invalid RegNet settings'),
    (dict(arch=dict(depth=0, w0=24, wa=24.0, wm=2.5, group_width=8)), 'positive integer depth'),
    (dict(out_indices=(4, )), r'out_indices=\(4,\) must be stage indices in 0..3'),
    (dict(frozen_stages=5), 'frozen_stages=5 must be an integer from -1 to 4'),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegNetY(**kwargs)


def test_registered_in_every_task_registry():
    for registry in (MMDET_MODELS, MMSEG_MODELS, MMPRETRAIN_MODELS):
        assert registry.get('RegNetY') is RegNetY


def test_rkan_wraps_regnety():
    torch.manual_seed(0)
    cfg = dict(type='RegNetY', arch='regnety_400mf', out_indices=(2, 3), frozen_stages=3)
    with_branch = build(dict(type='RKAN', backbone=cfg, stages=(2, 3)))
    plain = build(cfg)
    plain.load_state_dict(with_branch.backbone.state_dict())
    # Stage 3 (104 -> 208, stride 2) and stage 4 (208 -> 440, second KAN convolution).
    stage3 = 104 * 52 + 54 + 2 * 52 + 52 * 208 + 2 * 208
    stage4 = 208 * 104 + 54 + 2 * 104 + 104 * 440 + 45 + 2 * 440
    assert num_params(with_branch) - num_params(plain) == stage3 + stage4
    # The branch of a frozen stage is frozen with it.
    assert not any(p.requires_grad for p in with_branch.branches['2'].parameters())
    assert all(p.requires_grad for p in with_branch.branches['3'].parameters())
    with_branch.eval()
    plain.eval()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(with_branch(x)[1], plain(x)[1])
    for index in ('2', '3'):
        nn.init.zeros_(with_branch.branches[index].norm2.weight)
        nn.init.zeros_(with_branch.branches[index].norm2.bias)
    for out, ref in zip(with_branch(x), plain(x)):
        torch.testing.assert_close(out, ref)
    assert isinstance(with_branch, RKAN)


@pytest.mark.parametrize('base', sorted(TORCHVISION_COUNTS))
def test_classifier_bases_have_torchvision_counts(base):
    model = build_on_meta(base_model(base))
    assert num_params(model) == TORCHVISION_COUNTS[base]
    logits = model(torch.zeros(1, 3, 224, 224, device='meta'), mode='tensor')
    assert logits.shape == (1, 1000)


@pytest.mark.parametrize('row,base,num_classes,rkan,count,paper', ROWS, ids=[r[0] for r in ROWS])
def test_paper_row_parameter_counts(row, base, num_classes, rkan, count, paper):
    model = build_on_meta(base_model(base, num_classes, rkan=rkan))
    assert num_params(model) == count
    assert in_millions(count) == paper
