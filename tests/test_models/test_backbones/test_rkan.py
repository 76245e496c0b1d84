"""RKAN: residual KAN branches plugged into OpenMMLab CNN backbones, and the RKAN configs."""
import copy
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

from mmrkan.models.backbones import RKAN
from mmrkan.models.layers import RKANBlock

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIGS = osp.join(REPO, 'configs', 'rkan')

# Every tested family, with all four stages as outputs so each stage output can be compared.
FAMILIES = {
    'resnet18': dict(type='mmdet.ResNet', depth=18),
    'resnet34': dict(type='mmdet.ResNet', depth=34),
    'resnet50': dict(type='mmdet.ResNet', depth=50),
    'resnetv1d50': dict(type='mmdet.ResNetV1d', depth=50),
    'resnext50': dict(type='mmdet.ResNeXt', depth=50, groups=32, base_width=4),
    'regnetx-400mf': dict(type='mmdet.RegNet', arch='regnetx_400mf'),
    'res2net50': dict(type='mmdet.Res2Net', depth=50),
    'resnest50': dict(type='mmdet.ResNeSt', depth=50),
    'seresnet50': dict(type='mmpretrain.SEResNet', depth=50, out_indices=(0, 1, 2, 3)),
    'densenet121': dict(type='mmpretrain.DenseNet', arch='121', out_indices=(0, 1, 2, 3)),
    'resnetv1c50-d8': dict(type='mmseg.ResNetV1c', depth=50, strides=(1, 2, 1, 1),
                           dilations=(1, 1, 2, 4)),
}
# Deep variants: construction and a forward only.
DEEP_FAMILIES = {
    'resnet101': dict(type='mmdet.ResNet', depth=101),
    'resnet152': dict(type='mmdet.ResNet', depth=152),
}
# Families without a norm_eval setting.
NO_NORM_EVAL = {'densenet121'}


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _batch_norms(module: torch.nn.Module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def _random_loss(outs) -> torch.Tensor:
    # Random weights: the plain sum of a training-mode BN output has zero gradient.
    return sum((out * torch.randn_like(out)).sum() for out in outs)


def _silence_branch(model: RKAN, index: int) -> None:
    """Make the branch of stage ``index`` output zeros (its last BN scales by 0, adds 0)."""
    norm = model.branches[str(index)].norm2
    torch.nn.init.zeros_(norm.weight)
    torch.nn.init.zeros_(norm.bias)


@pytest.mark.parametrize('family', FAMILIES)
def test_family_outputs_and_gradients(family):
    torch.manual_seed(0)
    cfg = FAMILIES[family]
    model = RKAN(backbone=copy.deepcopy(cfg))
    plain = MODELS.build(copy.deepcopy(cfg))
    plain.load_state_dict(model.backbone.state_dict())
    model.eval()
    plain.eval()
    x = torch.randn(1, 3, 32, 32)
    expected = plain(x)

    # A silent branch leaves exactly the wrapped backbone's outputs.
    branch_norm = model.branches['3'].norm2
    weight, bias = branch_norm.weight.detach().clone(), branch_norm.bias.detach().clone()
    _silence_branch(model, 3)
    outs = model(x)
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)

    # A live branch changes the augmented (last) stage only.
    with torch.no_grad():
        branch_norm.weight.copy_(weight)
        branch_norm.bias.copy_(bias)
    outs = model(x)
    for out, ref in zip(outs[:-1], expected[:-1]):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert outs[-1].shape == expected[-1].shape
    assert not torch.allclose(outs[-1], expected[-1])

    # Training: the branch receives gradients.
    model.train()
    _random_loss(model(torch.randn(2, 3, 32, 32))).backward()
    for name, param in model.branches.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize('family', DEEP_FAMILIES)
def test_deep_family_builds_and_runs(family):
    cfg = DEEP_FAMILIES[family]
    model = RKAN(backbone=copy.deepcopy(cfg)).eval()
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 2048]
    assert outs[-1].shape[-2:] == (1, 1)
    assert model.branches['3'].conv1.in_channels == 1024


@pytest.mark.parametrize('family', FAMILIES)
def test_family_frozen_stages_and_norm_eval(family):
    cfg = dict(FAMILIES[family], frozen_stages=1)
    if family not in NO_NORM_EVAL:
        cfg['norm_eval'] = True
    # branch_norm_eval=False: the branch statistics train while the backbone's are frozen (the
    # default follows norm_eval, tested in test_contract_resnet.py).
    model = RKAN(backbone=cfg, stages=(0, 3), branch_norm_eval=False)
    model.train()
    frozen_branch, live_branch = model.branches['0'], model.branches['3']

    # The frozen first stage freezes its branch; the last stage's branch trains.
    entry, exit_ = model._stage_modules[0]
    assert not any(p.requires_grad for p in entry.parameters())
    assert not any(p.requires_grad for p in frozen_branch.parameters())
    assert not frozen_branch.training
    assert all(p.requires_grad for p in live_branch.parameters())
    # norm_eval freezes the wrapped backbone's norms; branch_norm_eval=False keeps the branch's.
    if family not in NO_NORM_EVAL:
        assert not any(bn.training for bn in _batch_norms(model.backbone))
    assert all(bn.training for bn in _batch_norms(live_branch))

    frozen_stats = frozen_branch.norm2.running_mean.clone()
    live_stats = live_branch.norm2.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(frozen_branch.norm2.running_mean, frozen_stats)
    assert not torch.equal(live_branch.norm2.running_mean, live_stats)


def test_branch_norm_eval_freezes_the_branch_statistics():
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18, norm_eval=False),
                 branch_norm_eval=True)
    model.train()
    branch = model.branches['3']
    assert not any(bn.training for bn in _batch_norms(branch))
    assert all(bn.training for bn in _batch_norms(model.backbone))
    stats = branch.norm1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(branch.norm1.running_mean, stats)


@pytest.mark.parametrize('family,stage,in_channels,out_channels,stride', [
    ('resnet50', 3, 1024, 2048, 2),
    ('resnet50', 0, 64, 256, 1),
    ('resnetv1c50-d8', 2, 512, 1024, 1),
    ('resnetv1c50-d8', 3, 1024, 2048, 1),
    ('densenet121', 2, 256, 512, 2),
    ('densenet121', 3, 512, 1024, 1),
])
def test_channels_and_stride_come_from_the_wrapped_backbone(family, stage, in_channels,
                                                            out_channels, stride):
    model = RKAN(backbone=copy.deepcopy(FAMILIES[family]), stages=(stage, ))
    branch = model.branches[str(stage)]
    assert branch.conv1.in_channels == in_channels
    assert branch.conv1.out_channels == in_channels // 2
    assert branch.conv2.out_channels == out_channels
    assert branch.kan1.stride == stride


def test_convnext_stage_opens_with_its_downsampling_layer():
    model = RKAN(
        backbone=dict(type='mmpretrain.ConvNeXt', arch='tiny', out_indices=(0, 1, 2, 3),
                      gap_before_final_norm=False),
        stages=(1, 3))
    for index, in_channels, out_channels in ((1, 96, 192), (3, 384, 768)):
        branch = model.branches[str(index)]
        assert branch.conv1.in_channels == in_channels
        assert branch.conv2.out_channels == out_channels
        assert branch.kan1.stride == 2
    outs = model.eval()(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [96, 192, 384, 768]


def test_stage_stride_beyond_two_is_refused():
    with pytest.raises(ValueError, match='stage 0 of ResNet has spatial stride 4'):
        RKAN(backbone=dict(type='mmdet.ResNet', depth=18, strides=(4, 2, 2, 2)), stages=(0, ))


def test_middle_stage_branch_feeds_the_later_stages():
    torch.manual_seed(0)
    cfg = dict(type='mmdet.ResNet', depth=18)
    model = RKAN(backbone=cfg, stages=(1, )).eval()
    plain = MODELS.build(cfg)
    plain.load_state_dict(model.backbone.state_dict())
    plain.eval()
    x = torch.randn(1, 3, 32, 32)
    outs, expected = model(x), plain(x)
    torch.testing.assert_close(outs[0], expected[0], rtol=0, atol=0)
    for out, ref in zip(outs[1:], expected[1:]):
        assert not torch.allclose(out, ref)
    # Only the last stage of the network gets the second KAN convolution.
    assert model.branches['1'].kan2 is None


def test_e_variant_and_negative_indices():
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18), stages=(-2, -1))
    assert model.stage_indices == (2, 3)
    assert model.branches['2'].kan2 is None and model.branches['3'].kan2 is not None


@pytest.mark.parametrize('aggregation', ['gating', 'se'])
def test_other_aggregations_run_with_every_parameter_used(aggregation):
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18), aggregation=aggregation)
    _random_loss(model(torch.randn(2, 3, 32, 32))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f'{name} is unused'


def test_deepcopy_keeps_the_branches_of_the_copy():
    # mmengine's EMA hook deep-copies the model: the copy's hooks must use the copy's branches.
    torch.manual_seed(0)
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18)).eval()
    x = torch.randn(1, 3, 32, 32)
    before = model(x)[-1]
    twin = copy.deepcopy(model)
    torch.testing.assert_close(twin(x)[-1], before)
    _silence_branch(twin, 3)
    assert not torch.allclose(twin(x)[-1], before)
    torch.testing.assert_close(model(x)[-1], before)


def test_sync_bn_reverted_branches_are_the_ones_used():
    sync_bn = dict(type='SyncBN', requires_grad=True)
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18, norm_cfg=sync_bn, norm_eval=False),
                 norm_cfg=sync_bn)
    model = revert_sync_batchnorm(model)
    branch = model.branches['3']
    assert isinstance(branch.norm2, _BatchNorm)
    assert not isinstance(branch.norm2, torch.nn.SyncBatchNorm)
    stats = branch.norm2.running_mean.clone()
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(branch.norm2.running_mean, stats)


def test_probe_leaves_the_backbone_statistics_untouched():
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18))
    assert model.training and model.backbone.training
    for bn in _batch_norms(model.backbone):
        assert int(bn.num_batches_tracked) == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_rbf_basis_has_the_authors_bumps():
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18), basis='rbf').eval()
    branch = model.branches['3']
    # The authors' RKAN: grid_size=(3, 2), 3 bumps in the first convolution, 2 in the second.
    assert (branch.kan1.basis, branch.kan1.num_bumps) == ('rbf', 3)
    assert (branch.kan2.basis, branch.kan2.num_bumps) == ('rbf', 2)
    assert model(torch.randn(1, 3, 32, 32))[-1].shape == (1, 512, 1, 1)


def test_expansion_builds_an_inverse_bottleneck():
    model = RKAN(backbone=dict(type='mmdet.ResNet', depth=18), expansion=4, reduce_factor=3)
    assert model.branches['3'].conv1.out_channels == 256 * 4


@pytest.mark.parametrize('kwargs,match', [
    (dict(stages=(4, )), r'stages=\(4,\) has index 4 out of range.*4 stages'),
    (dict(stages=(-5, )), r'stages=\(-5,\) has index -5 out of range'),
    (dict(stages=(3, -1)), r'stages=\(3, -1\) names a stage twice'),
    (dict(reduce_factor=3), r'reduce_factor=3 does not divide the 256 input channels of stage 3'),
    (dict(reduce_factor=0), r'reduce_factor=0 must be a positive integer'),
    (dict(expansion=4, stages=(2, 3)), r'expansion=4 \(RKAN-L\) supports one stage only'),
    (dict(aggregation='concat'), r"aggregation='concat' is not supported; allowed"),
    (dict(basis='fourier'), r"basis='fourier' is not supported; allowed: \('chebyshev'"),
    (dict(degrees=(3, )), r"degrees=\(3,\) must be two polynomial degrees \(ints >= 0\) for "
     r"basis='chebyshev'"),
])
def test_bad_settings_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RKAN(backbone=dict(type='mmdet.ResNet', depth=18), **kwargs)


def test_backbone_without_stages_is_refused():
    with pytest.raises(TypeError, match='LeNet5 exposes no stages'):
        RKAN(backbone=dict(type='mmpretrain.LeNet5'))


def test_unknown_backbone_type_is_a_clear_error():
    with pytest.raises(KeyError, match=r"backbone type .+mmdet\.NoSuchNet.+ was not found"):
        RKAN(backbone=dict(type='mmdet.NoSuchNet'))


def test_rkan_is_registered_in_every_task_registry():
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS, CLS_MODELS):
        assert registry.get('RKAN') is RKAN
        assert registry.get('RKANBlock') is RKANBlock


# Configs: parameter counts and the checkpoint layout shared across tasks.


def _build_config_model(path: str, **backbone_updates) -> torch.nn.Module:
    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.update(backbone_updates)
    model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model)


def _classifier(name: str, **backbone_updates) -> torch.nn.Module:
    return _build_config_model(osp.join(CONFIGS, name), **backbone_updates)


@pytest.fixture(scope='module')
def resnet50_classifier_params():
    import mmpretrain
    path = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs', 'resnet',
                    'resnet50_8xb32_in1k.py')
    count = _num_params(_build_config_model(path))
    assert count == 25_557_032
    return count


@pytest.fixture(scope='module')
def rkanet50_classifier_params():
    return _num_params(_classifier('rkanet-50_8xb32_in1k.py'))


def test_rkanet50_classifier_parameter_count(rkanet50_classifier_params):
    assert rkanet50_classifier_params == 27_135_115


def test_rkanet101_classifier_parameter_count():
    assert _num_params(_classifier('rkanet-101_8xb32_in1k.py')) == 46_127_243


def test_e_variant_adds_the_papers_increment(rkanet50_classifier_params):
    count = _num_params(_classifier('rkanet-50-e_8xb32_in1k.py'))
    assert count - rkanet50_classifier_params == 395_830


@pytest.mark.parametrize('expansion,increment_m', [(2, 6.30), (4, 12.60), (6, 18.89)])
def test_rkan_l_adds_the_papers_increment(expansion, increment_m, resnet50_classifier_params):
    model = _classifier('rkanet-50-4xl_8xb32_in1k.py', expansion=expansion)
    assert model.backbone.branches['3'].conv1.out_channels == 1024 * expansion
    increment = _num_params(model) - resnet50_classifier_params
    assert round(increment / 1e6, 2) == increment_m


@pytest.mark.parametrize('task_config', [
    'mask-rcnn_rkanet-50_fpn_1x_coco.py',
    'upernet_rkanet-50_4xb4-160k_ade20k-512x512.py',
])
def test_classifier_checkpoint_initialises_the_task_backbone(task_config, tmp_path):
    torch.manual_seed(0)
    classifier = _classifier('rkanet-50_8xb32_in1k.py')
    classifier.init_weights()
    checkpoint = str(tmp_path / 'rkanet-50_in1k.pth')
    torch.save({'state_dict': classifier.state_dict()}, checkpoint)
    expected = {
        key[len('backbone.'):]: value
        for key, value in classifier.state_dict().items() if key.startswith('backbone.')
    }

    cfg = Config.fromfile(osp.join(CONFIGS, task_config))
    init_default_scope(cfg.default_scope)
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    loaded = backbone.state_dict()
    assert set(loaded) == set(expected), (
        f'missing: {sorted(set(expected) - set(loaded))[:5]}, '
        f'unexpected: {sorted(set(loaded) - set(expected))[:5]}')
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_rkanet_recipe_starts_from_the_authors_initialisation():
    # What the Runner does before training: build the model, then model.init_weights().
    torch.manual_seed(0)
    model = _classifier('rkanet-50_8xb32_in1k.py')
    model.init_weights()
    branch = model.backbone.branches['3']
    for conv, fan_in in ((branch.conv1, 1024), (branch.conv2, 512)):
        # PyTorch's default conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): std 1/sqrt(3 fan_in).
        assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.01)
    # torchvision's ResNet (zero_init_residual=False): no residual block starts as the identity.
    last_norms = [block.norm3.weight for layer in model.backbone.backbone.res_layers
                  for block in getattr(model.backbone.backbone, layer)]
    assert len(last_norms) == 16
    assert all(torch.equal(weight, torch.ones_like(weight)) for weight in last_norms)
