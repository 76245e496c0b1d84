"""RKAN keeps the contract of the CNN it wraps: mmdet's, mmpretrain's and mmseg's ResNet family.

Each test runs one documented behaviour of a parent on the parent and on
``RKAN(backbone=<the parent's config>)`` and asserts the same outcome for the wrapped network; the
branches follow (a frozen stage freezes its branch, ``norm_eval`` freezes the branch norms).
Where RKAN differs on purpose (README, "KAT and RKAN as drop-in backbones") the test says so.
"""
import copy
import inspect
from typing import Any

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.registry import MODELS
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmrkan.models.backbones import RKAN
from mmrkan.models.backbones.pretrained import PRETRAINED_DEPRECATION

# Tiny members of each family: 8 stem and base channels, 64x64 inputs (2x2 maps in stage 4).
PARENTS = {
    'mmdet.ResNet': dict(depth=18, base_channels=8),
    'mmdet.ResNeXt': dict(depth=50, groups=2, base_width=4, base_channels=8),
    'mmdet.ResNetV1d': dict(depth=18, base_channels=8),
    'mmpretrain.ResNet': dict(depth=18, stem_channels=8, base_channels=8),
    'mmpretrain.ResNeXt': dict(depth=50, groups=2, width_per_group=4, stem_channels=8,
                               base_channels=8),
    'mmpretrain.ResNetV1d': dict(depth=18, stem_channels=8, base_channels=8),
    'mmseg.ResNetV1c': dict(depth=18, stem_channels=8, base_channels=8),
}
INPUT_HW = (64, 64)
DCN = dict(type='DCN', deform_groups=1, fallback_on_stride=False)
CONTEXT_BLOCK = [dict(cfg=dict(type='ContextBlock', ratio=1. / 4),
                      stages=(False, True, True, True), position='after_conv3')]


def parent_cfg(parent: str, **kwargs) -> dict:
    return copy.deepcopy(dict(PARENTS[parent], type=parent, **kwargs))


def build_parent(parent: str, **kwargs) -> nn.Module:
    return MODELS.build(parent_cfg(parent, **kwargs))


def build_rkan(parent: str, stages=(0, -1), **kwargs) -> RKAN:
    return RKAN(backbone=parent_cfg(parent, **kwargs), stages=stages)


def _structure(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return tuple(outputs.shape)
    return type(outputs).__name__, [_structure(item) for item in outputs]


def _norm_weights(model: nn.Module) -> list:
    return sorted({round(float(v), 4) for m in model.modules()
                   if isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None
                   for v in m.weight.unique()})


def outcome(model: nn.Module, in_channels: int = 3, input_hw=INPUT_HW) -> dict:
    """What a user of the backbone sees: which modules are in training mode (as built and after
    ``train()``), its outputs, which parameters train, and its norm weights after
    ``init_weights`` (``zero_init_residual``, ``init_cfg``)."""
    def training():
        return {name: m.training for name, m in model.named_modules() if name}

    as_built = training()
    model.train()
    after_train = training()
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    model.eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, in_channels, *input_hw))
    model.init_weights()
    return dict(as_built=as_built, after_train=after_train, trainable=trainable,
                outputs=_structure(outputs), norm_weights=_norm_weights(model))


def wrapped_outcome(rkan: RKAN, in_channels: int = 3, input_hw=INPUT_HW) -> dict:
    """The outcome of RKAN as seen on the wrapped backbone (names without ``backbone.``), after
    checking that the branches follow it."""
    result = outcome(rkan, in_channels, input_hw)
    check_branches_follow(rkan)
    wrapped = {}
    for key, value in result.items():
        if isinstance(value, dict):
            value = {name[len('backbone.'):]: flag for name, flag in value.items()
                     if name.startswith('backbone.')}
        wrapped[key] = value
    wrapped['norm_weights'] = _norm_weights(rkan.backbone)
    return wrapped


def check_branches_follow(rkan: RKAN) -> None:
    """A frozen stage's branch is frozen; the branch norms follow the backbone's norm_eval."""
    rkan.train()
    norm_eval = getattr(rkan.backbone, 'norm_eval', False)
    for index in rkan.stage_indices:
        branch = rkan.branches[str(index)]
        stage = rkan._stage_modules[index][1]
        frozen = not any(p.requires_grad for p in stage.parameters())
        assert all(p.requires_grad != frozen for p in branch.parameters()), index
        norms = [m for m in branch.modules() if isinstance(m, _BatchNorm)]
        assert all(norm.training == (not frozen and not norm_eval) for norm in norms), index


def _arguments(parent: str) -> set:
    """Every documented constructor argument of a parent: its own and those of the ResNet it
    passes ``**kwargs`` to."""
    cls = MODELS.get(parent)
    arguments = set()
    for klass in cls.__mro__:
        if klass.__name__ in ('BaseModule', 'BaseBackbone'):
            break
        if '__init__' in vars(klass):
            arguments |= set(inspect.signature(klass.__init__).parameters)
    return arguments - {'self', 'kwargs'}


# A non-default value of every constructor argument of the family (a list of settings each).
ARGUMENT_VALUES = {
    'depth': [dict(depth=34), dict(depth=50)],
    'in_channels': [dict(in_channels=1)],
    'stem_channels': [dict(stem_channels=16)],
    'base_channels': [dict(base_channels=16)],
    'expansion': [dict(depth=50, expansion=2)],
    'num_stages': [dict(num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                        out_indices=(0, 1, 2))],
    'strides': [dict(strides=(1, 2, 2, 1))],
    'dilations': [dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))],
    'out_indices': [dict(out_indices=(3, )), dict(out_indices=(0, 2)), dict(out_indices=(-1, )),
                    dict(out_indices=(1, -1))],
    'style': [dict(style='caffe')],
    'deep_stem': [dict(deep_stem=True)],
    'avg_down': [dict(avg_down=True)],
    'frozen_stages': [dict(frozen_stages=0), dict(frozen_stages=1), dict(frozen_stages=4)],
    'conv_cfg': [dict(conv_cfg=dict(type='ConvWS'))],
    'norm_cfg': [dict(norm_cfg=dict(type='GN', num_groups=2, requires_grad=True)),
                 dict(norm_cfg=dict(type='BN', requires_grad=False))],
    'norm_eval': [dict(norm_eval=True), dict(norm_eval=False)],
    'dcn': [dict(depth=50, dcn=DCN, stage_with_dcn=(False, True, True, True))],
    'stage_with_dcn': [dict(depth=50, dcn=DCN, stage_with_dcn=(False, False, False, True))],
    'plugins': [dict(depth=50, plugins=CONTEXT_BLOCK)],
    'multi_grid': [dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), multi_grid=(1, 2))],
    'contract_dilation': [dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                               contract_dilation=True)],
    'with_cp': [dict(with_cp=True)],
    'zero_init_residual': [dict(zero_init_residual=False), dict(zero_init_residual=True)],
    'pretrained': [],  # a checkpoint file: test_pretrained_is_converted_as_by_the_parent
    'init_cfg': [dict(init_cfg=dict(type='Constant', val=0.5, layer='_BatchNorm'))],
    'drop_path_rate': [dict(drop_path_rate=0.1)],
    'groups': [dict(groups=4)],
    'base_width': [dict(base_width=2)],
    'width_per_group': [dict(width_per_group=2)],
}
# The subclasses (ResNeXt, ResNetV1d) pass the ResNet arguments on to their library's ResNet,
# tested above: for them, their own arguments and those that touch every block.
SUBCLASS_ARGUMENTS = {'depth', 'out_indices', 'frozen_stages', 'norm_eval', 'with_cp',
                      'zero_init_residual', 'deep_stem', 'avg_down'}


def _tested_arguments(parent: str) -> list:
    if MODELS.get(parent).__name__ in ('ResNet', 'ResNetV1c'):
        return sorted(_arguments(parent))
    own = set(inspect.signature(MODELS.get(parent).__init__).parameters)
    return sorted((own | SUBCLASS_ARGUMENTS) & _arguments(parent))


ARGUMENT_CASES = [(parent, kwargs) for parent in PARENTS
                  for argument in _tested_arguments(parent)
                  for kwargs in ARGUMENT_VALUES[argument]]


@pytest.mark.parametrize('parent', PARENTS)
def test_every_constructor_argument_is_tested(parent):
    assert _arguments(parent) <= set(ARGUMENT_VALUES)


@pytest.mark.parametrize('parent, kwargs', ARGUMENT_CASES,
                         ids=[f'{p}-{kw}' for p, kw in ARGUMENT_CASES])
def test_argument_has_the_parents_meaning(parent, kwargs):
    try:
        parent_model, parent_error = build_parent(parent, **kwargs), None
    except Exception as error:
        parent_model, parent_error = None, type(error)
    if parent_error is not None:  # the parent refuses the setting: RKAN refuses it alike
        with pytest.raises(parent_error):
            build_rkan(parent, **kwargs)
        return
    in_channels = kwargs.get('in_channels', 3)
    # mmcv's deformable convolution needs maps of at least its kernel size in stage 4.
    input_hw = (128, 128) if 'dcn' in kwargs else INPUT_HW
    assert wrapped_outcome(build_rkan(parent, **kwargs), in_channels, input_hw) == outcome(
        parent_model, in_channels, input_hw)


def test_negative_out_indices_give_what_the_parent_gives():
    # mmdet's and mmpretrain's ResNet compare the stage number with out_indices as given: a
    # negative index selects no stage. RKAN returns the wrapped backbone's outputs unchanged.
    for parent in ('mmdet.ResNet', 'mmpretrain.ResNet'):
        x = torch.randn(1, 3, *INPUT_HW)
        parent_outputs = build_parent(parent, out_indices=(1, -1))(x)
        assert _structure(build_rkan(parent, out_indices=(1, -1))(x)) == _structure(
            parent_outputs)
        assert len(parent_outputs) == 1


@pytest.mark.parametrize('parent', ['mmdet.ResNet', 'mmseg.ResNetV1c'])
def test_deformable_convolutions_in_the_last_stages(parent):
    """Issue 18, failure 3: mmdet's ``dconv-c3-c5`` configs (DCN in stages 2-4) at 64x64 give
    2x2 maps to stage 4, too small for a probe through mmcv's deformable convolution."""
    kwargs = dict(depth=50, dcn=DCN, stage_with_dcn=(False, True, True, True), norm_eval=True)
    rkan = build_rkan(parent, stages=(-1, ), **kwargs)
    x = torch.randn(1, 3, 96, 96)
    assert _structure(rkan(x)) == _structure(build_parent(parent, **kwargs)(x))
    assert rkan.branches['3'].kan1.stride == 2


def test_norm_eval_freezes_every_norm_including_the_branches():
    """Issue 18, failure 6: mmdet's ResNet configs freeze every BatchNorm (norm_eval=True); the
    branch statistics must not train either, and a batch of one image whose last stage is 1x1
    runs in training mode as it does without RKAN."""
    x = torch.randn(1, 3, 32, 32)
    for model in (build_parent('mmdet.ResNet', norm_eval=True),
                  build_rkan('mmdet.ResNet', norm_eval=True)):
        model.train()
        assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
        outputs = model(x)
        assert outputs[-1].shape == (1, 64, 1, 1)
    rkan = build_rkan('mmdet.ResNet', norm_eval=True)
    before = rkan.branches['3'].norm1.running_mean.clone()
    rkan.train()
    rkan(torch.randn(2, 3, *INPUT_HW))
    torch.testing.assert_close(rkan.branches['3'].norm1.running_mean, before)


def test_branch_norm_eval_overrides_the_backbones_norm_eval():
    # The RKAN paper's detection recipe: frozen backbone statistics, branch statistics training.
    rkan = RKAN(backbone=parent_cfg('mmdet.ResNet', norm_eval=True), branch_norm_eval=False)
    rkan.train()
    assert all(m.training for m in rkan.branches.modules() if isinstance(m, _BatchNorm))
    assert not any(m.training for m in rkan.backbone.modules() if isinstance(m, _BatchNorm))
    rkan = RKAN(backbone=parent_cfg('mmdet.ResNet', norm_eval=False), branch_norm_eval=True)
    rkan.train()
    assert not any(m.training for m in rkan.branches.modules() if isinstance(m, _BatchNorm))
    assert all(m.training for m in rkan.backbone.modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('parent', ['mmdet.ResNet', 'mmpretrain.ResNeXt'])
def test_with_cp_recomputes_the_blocks_and_the_branches(parent, monkeypatch):
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(function)
        return checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting_checkpoint)
    x = torch.randn(2, 3, *INPUT_HW, dtype=torch.float64)  # float64: no rounding differences
    counts = []
    for build in (build_parent, build_rkan):
        torch.manual_seed(0)
        plain = build(parent, norm_eval=False).double()
        recomputed = build(parent, norm_eval=False, with_cp=True).double()
        recomputed.load_state_dict(plain.state_dict())
        grads = []
        for model in (plain, recomputed):
            calls.clear()
            model.train()
            sum(out.square().sum() for out in model(x)).backward()
            grads.append({name: p.grad for name, p in model.named_parameters()})
        counts.append(len(calls))
        for name, grad in grads[0].items():
            torch.testing.assert_close(grads[1][name], grad, msg=name)
    num_blocks = 8 if parent == 'mmdet.ResNet' else 16
    assert counts == [num_blocks, num_blocks + 2]  # RKAN: and its 2 branches


@pytest.mark.parametrize('parent', ['mmdet.ResNet', 'mmpretrain.ResNet', 'mmseg.ResNetV1c'])
def test_partial_pretrained_checkpoint_warns_and_loads_the_rest(parent, tmp_path, missing_keys_reported):
    """A checkpoint without the last stage (e.g. a truncated backbone) initialises the rest, with
    a warning naming what is missing."""
    reports = missing_keys_reported
    state_dict = {name: value for name, value in build_parent(parent).state_dict().items()
                  if not name.startswith('layer4.')}
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=state_dict), path)
    init_cfg = dict(type='Pretrained', checkpoint=path)
    results = []
    for model in (build_parent(parent, init_cfg=init_cfg),
                  build_rkan(parent, init_cfg=init_cfg).backbone):
        reports.clear()
        model.init_weights()
        for name, value in state_dict.items():
            torch.testing.assert_close(model.state_dict()[name], value, msg=name)
        results.append(sorted(reports))
    assert results[0] and all(key.startswith('layer4.') for key in results[0])
    assert results[1] == results[0]


@pytest.mark.parametrize('parent', ['mmpretrain.ResNet', 'mmpretrain.ResNeXt'])
def test_layer_depths_for_layer_wise_lr_decay_are_the_parents(parent):
    # mmpretrain defines the depths of ResNet-50/101/152 only.
    resnet, rkan = build_parent(parent, depth=50), build_rkan(parent, depth=50)
    for name, _ in resnet.named_parameters():
        assert rkan.get_layer_depth('backbone.backbone.' + name, 'backbone.') == \
            resnet.get_layer_depth('backbone.' + name, 'backbone.'), name
    # A branch sits at the depth of the last block of its stage.
    last_of_stage_1 = resnet.get_layer_depth('backbone.layer1.2.bn3.weight', 'backbone.')
    assert rkan.get_layer_depth('backbone.branches.0.conv1.weight', 'backbone.') == \
        last_of_stage_1


def test_layer_depths_of_a_backbone_without_them_are_refused_as_by_mmpretrain():
    with pytest.raises(NotImplementedError, match='get_layer_depth'):
        build_rkan('mmdet.ResNet').get_layer_depth('backbone.branches.0.conv1.weight',
                                                   'backbone.')


# (parent, arguments, the error the parent raises, and RKAN with it)
ERROR_CASES = [
    ('mmdet.ResNet', dict(depth=19), KeyError),
    ('mmpretrain.ResNet', dict(depth=19), KeyError),
    ('mmdet.ResNet', dict(num_stages=5), AssertionError),
    ('mmdet.ResNet', dict(out_indices=(4, )), AssertionError),
    ('mmpretrain.ResNet', dict(out_indices=(4, )), AssertionError),
    ('mmdet.ResNet', dict(depth=50, style='tf'), AssertionError),
    ('mmdet.ResNet', dict(dcn=DCN, stage_with_dcn=(False, False, False, True)),
     AssertionError),  # BasicBlock has no DCN
    ('mmdet.ResNet', dict(depth=50, dcn=DCN, stage_with_dcn=(True, )), AssertionError),
    ('mmpretrain.ResNet', dict(expansion=2), AssertionError),  # BasicBlock expands by 1
    ('mmdet.ResNetV1d', dict(deep_stem=False), TypeError),
    ('mmdet.ResNet', dict(pretrained=1), TypeError),
    ('mmdet.ResNet', dict(pretrained='a.pth', init_cfg=dict(type='Pretrained',
                                                            checkpoint='b.pth')),
     AssertionError),
]


@pytest.mark.parametrize('parent, kwargs, error', ERROR_CASES)
def test_bad_arguments_are_refused_as_by_the_parent(parent, kwargs, error):
    with pytest.raises(error):
        build_parent(parent, **kwargs)
    with pytest.raises(error):
        build_rkan(parent, **kwargs)


@pytest.mark.parametrize('parent', ['mmdet.ResNet', 'mmseg.ResNetV1c'])
def test_pretrained_is_converted_as_by_the_parent(parent, tmp_path):
    """``pretrained=PATH`` given to RKAN (as mmseg's segmentor does) initialises the wrapped
    backbone as the parent's own ``pretrained``: same warning, same weights."""
    source = build_parent(parent)
    path = str(tmp_path / 'resnet.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    with pytest.warns(UserWarning) as parent_warnings:
        resnet = build_parent(parent, pretrained=path)
    with pytest.warns(UserWarning) as rkan_warnings:
        rkan = RKAN(backbone=parent_cfg(parent), pretrained=path)
    # The parent's own words (mmseg's ResNet: "pretrained is a deprecated").
    assert [str(w.message) for w in rkan_warnings] == [str(w.message) for w in parent_warnings]
    assert 'pretrained is' in str(parent_warnings[0].message)
    assert rkan.backbone.init_cfg == resnet.init_cfg == dict(type='Pretrained', checkpoint=path)
    rkan.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(rkan.backbone.state_dict()[name], value, msg=name)
    with pytest.raises(ValueError, match='pretrained'):
        RKAN(backbone=parent_cfg(parent), pretrained=path, init_cfg=dict(type='Pretrained',
                                                                         checkpoint=path))


def test_pretrained_of_a_backbone_without_the_argument_becomes_its_init_cfg(tmp_path):
    # mmpretrain's ResNet has no pretrained argument: RKAN converts it as mmdet's ResNet does.
    source = build_parent('mmpretrain.ResNet')
    path = str(tmp_path / 'resnet.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    with pytest.warns(UserWarning) as warnings:
        rkan = RKAN(backbone=parent_cfg('mmpretrain.ResNet'), pretrained=path)
    assert [str(w.message) for w in warnings] == [PRETRAINED_DEPRECATION]
    assert rkan.backbone.init_cfg == dict(type='Pretrained', checkpoint=path)
    rkan.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(rkan.backbone.state_dict()[name], value, msg=name)


def test_mmsegs_segmentor_passes_pretrained_to_rkan(tmp_path):
    """Issue 18, failure 5: a stock mmseg ResNet config (``pretrained=...`` at the segmentor)
    with the backbone type swapped to RKAN."""
    source = build_parent('mmseg.ResNetV1c')
    path = str(tmp_path / 'resnet.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    segmentor_cfg = ConfigDict(
        type='EncoderDecoder',
        pretrained=path,
        backbone=dict(type='RKAN', backbone=parent_cfg('mmseg.ResNetV1c'), stages=(3, )),
        decode_head=dict(type='FCNHead', in_channels=64, channels=8, num_convs=1, num_classes=3,
                         norm_cfg=dict(type='BN')))
    # mmseg's ResNet's own words; built in mmseg's scope, as its configs are.
    with pytest.warns(UserWarning, match='pretrained is a deprecated'), \
            DefaultScope.overwrite_default_scope('mmseg'):
        segmentor = SEG_MODELS.build(segmentor_cfg)
    assert isinstance(segmentor.backbone, RKAN)
    segmentor.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(segmentor.backbone.backbone.state_dict()[name], value,
                                   msg=name)

