"""RKAN's branch options: every KAN convolution setting, per-stage reduce factors and
aggregations, n_convs and shortcut, and DenseNet's branch before its final ReLU."""
import copy
import inspect

import pytest
import torch
from mmengine.registry import MODELS

from mmrkan.models.backbones import RKAN
from mmrkan.models.backbones.rkan import KAN_CFG_SETTINGS, RKAN_BASES, kan_conv_cfgs
from mmrkan.ops import KANConv2d
from mmrkan.ops.kan_conv_options import NORMALIZATION_CODES

# ResNet-18 at a quarter of its width: stage inputs 16, 16, 32, 64; outputs 16, 32, 64, 128.
TINY_RESNET = dict(type='mmdet.ResNet', depth=18, base_channels=16)
# A DenseNet-121-like network of 4 small dense blocks.
TINY_DENSENET = dict(type='mmpretrain.DenseNet',
                     arch=dict(growth_rate=8, depths=[2, 2, 2, 2], init_channels=16),
                     out_indices=(0, 1, 2, 3))
NORMALIZATIONS = tuple(NORMALIZATION_CODES)
# The settings of each basis and where they land: (first conv, second conv) KANConv2d arguments.
PER_CONV = {
    'chebyshev': ((3, 2), None, 'degree'),
    'legendre': ((3, 2), None, 'degree'),
    'jacobi': ((3, 2), None, 'degree'),
    'hermite': ((3, 2), None, 'degree'),
    'rbf': (None, (3, 2), 'num_bumps'),
    'rbf_paper': (None, (3, 2), 'num_bumps'),
    'b_spline': ((3, 2), (3, 2), 'grid_size'),
}
# Switches and initialisation settings of each family, all off their defaults.
SWITCHES = {
    'chebyshev': dict(use_linear=False, use_scaler=False),
    'legendre': dict(skip_activation=False),
    'jacobi': dict(jacobi_alpha=1.5, jacobi_beta=-0.5, skip_activation=False),
    'hermite': dict(use_linear=False),
    'rbf': dict(grid_range=(-2, 2), scale_spline=0.5, use_scaler=True),
    'rbf_paper': dict(grid_range=(-1.5, 1.0), use_linear=False),
    'b_spline': dict(grid_range=(-2, 1), scale_noise=0.2, scale_base=0.5, scale_spline=2.0,
                     use_scaler=False, skip_activation=False),
}


def _random_loss(outs) -> torch.Tensor:
    return sum((out * torch.randn_like(out)).sum() for out in outs)


def _assert_is(conv: KANConv2d, cfg: dict, stride: int) -> None:
    """``conv`` computes what ``KANConv2d(stride=stride, **cfg)`` computes with its weights."""
    reference = KANConv2d(stride=stride, **cfg)
    reference.load_state_dict(conv.state_dict())  # same parameters, names and shapes
    assert conv.options == reference.options
    for name in ('basis', 'degree', 'num_bumps', 'grid_size', 'use_linear', 'skip_activation',
                 'use_scaler', 'scale_noise', 'scale_base', 'scale_spline', 'stride'):
        assert getattr(conv, name) == getattr(reference, name), name
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), reference(x))


@pytest.mark.parametrize('normalization', NORMALIZATIONS)
@pytest.mark.parametrize('basis', RKAN_BASES)
def test_every_family_and_normalisation_reaches_the_kan_convolutions(basis, normalization):
    torch.manual_seed(0)
    model = RKAN(backbone=copy.deepcopy(TINY_RESNET), stages=(2, 3), basis=basis,
                 kan_cfg=dict(normalization=normalization))
    degrees, grid_sizes, grid_name = PER_CONV[basis]
    for index, stride in (('2', 2), ('3', 2)):
        branch = model.branches[index]
        convs = [(branch.kan1, 0, stride)] + ([(branch.kan2, 1, 1)] if index == '3' else [])
        assert (branch.kan2 is None) == (index == '2')
        for conv, position, conv_stride in convs:
            cfg = dict(basis=basis, normalization=normalization)
            if degrees:
                cfg['degree'] = degrees[position]
            if grid_sizes:
                cfg[grid_name] = grid_sizes[position]
            _assert_is(conv, cfg, conv_stride)
    model.train()
    _random_loss(model(torch.randn(2, 3, 32, 32))).backward()
    for name, param in model.branches.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize('basis', RKAN_BASES)
def test_switches_and_per_convolution_values_reach_the_kan_convolutions(basis):
    torch.manual_seed(0)
    degrees, grid_sizes, grid_name = PER_CONV[basis]
    kwargs = dict(kan_cfg=SWITCHES[basis])
    if degrees:
        kwargs['degrees'] = (2, 4) if basis == 'b_spline' else (4, 1)
    if grid_sizes:
        kwargs['grid_sizes'] = (5, 4)
    model = RKAN(backbone=copy.deepcopy(TINY_RESNET), basis=basis, **kwargs)
    branch = model.branches['3']
    for conv, position, stride in ((branch.kan1, 0, 2), (branch.kan2, 1, 1)):
        cfg = dict(SWITCHES[basis], basis=basis)
        if degrees:
            cfg['degree'] = kwargs['degrees'][position]
        if grid_sizes:
            cfg[grid_name] = kwargs['grid_sizes'][position]
        _assert_is(conv, cfg, stride)
    model.train()
    _random_loss(model(torch.randn(2, 3, 32, 32))).backward()
    assert all(param.grad is not None for param in model.branches.parameters())


def test_kan_cfg_takes_every_other_kanconv2d_setting():
    settings = set(KAN_CFG_SETTINGS) | {'basis', 'degree', 'num_bumps', 'grid_size', 'stride'}
    assert settings == set(inspect.signature(KANConv2d).parameters)
    assert set(KAN_CFG_SETTINGS) == set().union(*SWITCHES.values()) | {'normalization'}


def test_defaults_are_the_authors_chebyshev():
    first, second = kan_conv_cfgs('chebyshev')
    assert first == dict(basis='chebyshev', degree=3) and second == dict(basis='chebyshev',
                                                                          degree=2)
    assert kan_conv_cfgs('b_spline') == (dict(basis='b_spline', degree=3, grid_size=3),
                                         dict(basis='b_spline', degree=2, grid_size=2))


def test_settings_checks_draw_no_random_numbers():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    kan_conv_cfgs('b_spline', kan_cfg=dict(scale_noise=0.3))
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


@pytest.mark.parametrize('kwargs,match', [
    (dict(basis='fourier'), r"basis='fourier' is not supported; allowed: \('chebyshev'"),
    (dict(kan_cfg=dict(normalization='l2')),
     r"kan_cfg=\{'normalization': 'l2'\}: KANConv2d: normalization='l2' is not supported; "
     r"allowed: \('none', 'tanh', 'arctan', 'min-max', 'standardization'\)"),
    (dict(kan_cfg=dict(order=3)), r"kan_cfg has 'order'=3, not a setting it takes; allowed: "
     r"\('normalization'"),
    (dict(kan_cfg=dict(stride=1)), r"kan_cfg has 'stride'=1, not a setting it takes.*the stride "
     r"is the stage's"),
    (dict(kan_cfg=dict(degree=4)), r"kan_cfg sets degree=4, which RKAN's degrees= sets"),
    (dict(basis='rbf', kan_cfg=dict(num_bumps=4)),
     r"kan_cfg sets num_bumps=4, which RKAN's grid_sizes= sets"),
    (dict(kan_cfg=dict(basis='rbf')), r"kan_cfg sets basis='rbf', which RKAN's basis= sets"),
    (dict(kan_cfg=dict(jacobi_alpha=1.0)),
     r"jacobi_alpha=1.0 is only used by basis 'jacobi', got basis='chebyshev'"),
    (dict(basis='jacobi', kan_cfg=dict(jacobi_beta=-1.0)),
     r'jacobi_beta=-1.0 must be a finite number > -1'),
    (dict(basis='rbf', kan_cfg=dict(grid_range=(1, -1))),
     r'grid_range=\(1, -1\) must be two finite numbers \(low, high\) with low < high'),
    (dict(kan_cfg=dict(use_linear='yes')), r"use_linear='yes' must be True or False"),
    (dict(basis='rbf', degrees=(3, 2)),
     r"degrees=\(3, 2\) is not used by basis='rbf' \(only by chebyshev.*b_spline\); leave it "
     r'None'),
    (dict(grid_sizes=(3, 2)), r"grid_sizes=\(3, 2\) is not used by basis='chebyshev'"),
    (dict(degrees=(3, -1)), r"degrees=\(3, -1\) must be two polynomial degrees \(ints >= 0\)"),
    (dict(basis='b_spline', degrees=(6, 2)),
     r"degrees=\(6, 2\) must be two spline orders \(ints from 1 to 5\) for basis='b_spline'"),
    (dict(basis='rbf', grid_sizes=(3, 1)),
     r"grid_sizes=\(3, 1\) must be two numbers of bumps \(ints >= 2\) for basis='rbf'"),
    (dict(basis='b_spline', grid_sizes=(0, 2)),
     r'grid_sizes=\(0, 2\) must be two numbers of grid intervals \(ints >= 1\)'),
    (dict(basis='rbf', grid_sizes=3), r'grid_sizes=3 must be two numbers of bumps'),
    (dict(n_convs=0), r'n_convs=0 must be a positive integer'),
    (dict(shortcut=1), r'shortcut=1 must be True or False'),
])
def test_bad_kan_settings_are_refused_before_the_backbone_is_built(kwargs, match):
    # The backbone type does not exist: the settings are refused before it is looked up.
    with pytest.raises(ValueError, match=match):
        RKAN(backbone=dict(type='mmdet.NoSuchNet'), **kwargs)


# Per-stage reduce factors and aggregations.


def _branch_layout(model: RKAN) -> dict:
    return {index: (branch.conv1.out_channels, branch.aggregation)
            for index, branch in model.branches.items()}


@pytest.mark.parametrize('kwargs', [
    dict(stages=(1, 3), reduce_factor=(4, 2), aggregation=('gating', 'se')),
    dict(stages=[3, 1], reduce_factor=[2, 4], aggregation=['se', 'gating']),  # order of stages
    dict(stages=None, reduce_factor=[None, 4, None, 2], aggregation=[None, 'gating', None, 'se']),
    dict(stages=(-1, -3), reduce_factor=(2, 4), aggregation=('se', 'gating')),
])
def test_per_stage_reduce_factors_and_aggregations(kwargs):
    torch.manual_seed(0)
    model = RKAN(backbone=copy.deepcopy(TINY_RESNET), **kwargs)
    assert model.stage_indices == (1, 3)
    # Stage 1 reads 16 channels (/4), stage 3 reads 64 (/2).
    assert _branch_layout(model) == {'1': (4, 'gating'), '3': (32, 'se')}
    model.train()
    _random_loss(model(torch.randn(2, 3, 32, 32))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f'{name} is unused'


def test_one_value_applies_to_every_chosen_stage():
    model = RKAN(backbone=copy.deepcopy(TINY_RESNET), stages=None,
                 aggregation=['addition', None, 'gating', 'addition'], reduce_factor=4)
    assert _branch_layout(model) == {'0': (4, 'addition'), '2': (8, 'gating'),
                                     '3': (16, 'addition')}
    model = RKAN(backbone=copy.deepcopy(TINY_RESNET), stages=(0, 2), aggregation='se')
    assert _branch_layout(model) == {'0': (8, 'se'), '2': (16, 'se')}


def test_authors_form_builds_the_stages_form():
    # The authors' RKAN "E" variant: mechanisms [None, None, 'addition', 'addition'].
    authors = RKAN(backbone=copy.deepcopy(TINY_RESNET), stages=None,
                   aggregation=[None, None, 'addition', 'addition'])
    ours = RKAN(backbone=copy.deepcopy(TINY_RESNET), stages=(-2, -1))
    assert {k: v.shape for k, v in authors.state_dict().items()} == \
        {k: v.shape for k, v in ours.state_dict().items()}


@pytest.mark.parametrize('kwargs,match', [
    (dict(stages=(2, 3), reduce_factor=(2, )),
     r'reduce_factor=\[2\] has 1 entries but stages=\(2, 3\) chooses 2 stage\(s\): give one '
     r'value, one per chosen stage \(in the order of stages\), or stages=None and one entry per '
     r'stage of mmdet.ResNet \(4\), None for no branch'),
    (dict(reduce_factor=[2, 2, 2, 2]), r'reduce_factor=\[2, 2, 2, 2\] has 4 entries but '
     r'stages=\(-1,\) chooses 1 stage'),
    (dict(stages=(2, 3), aggregation=['addition']), r"aggregation=\['addition'\] has 1 entries"),
    (dict(stages=None, aggregation=[None, 'addition']),
     r"aggregation=\[None, 'addition'\] has 2 entries; with stages=None it has one per stage of "
     r'mmdet.ResNet \(4\)'),
    (dict(stages=None, aggregation=[None, None, None, 'addition'], reduce_factor=[2, 2]),
     r'reduce_factor=\[2, 2\] has 2 entries; with stages=None'),
    (dict(stages=None, aggregation=[None] * 4), r'gives no stage a branch'),
    (dict(stages=None, aggregation=[None, None, None, 'addition'], reduce_factor=[2, 2, 2, 2]),
     r'disagree at stage 0: reduce_factor is None exactly where aggregation is None'),
    (dict(stages=None, aggregation=[None, None, 'addition', 'addition'], expansion=4),
     r"expansion=4 \(RKAN-L\) supports one stage only, got aggregation=\[None, None, "
     r"'addition', 'addition'\]"),
    (dict(stages=(7, ), aggregation=['se']), r'stages=\(7,\) has index 7 out of range'),
])
def test_per_stage_lists_of_the_wrong_length_are_refused_before_the_probe(kwargs, match,
                                                                          monkeypatch):
    def no_probe(self, *args):
        raise AssertionError('the probe ran')

    monkeypatch.setattr(RKAN, '_probe', no_probe)
    with pytest.raises(ValueError, match=match):
        RKAN(backbone=copy.deepcopy(TINY_RESNET), **kwargs)


@pytest.mark.parametrize('kwargs,match', [
    (dict(stages=None), r"stages=None takes the stages from aggregation, which must then list "
     r"one entry per stage of the backbone.*got aggregation='addition'"),
    (dict(stages=(2, 3), aggregation=[None, 'addition']),
     r"aggregation=\[None, 'addition'\] has None, not supported; allowed: \('addition', "
     r"'gating', 'se'\) \(None, for no branch, only in a list over all stages, with "
     r'stages=None\)'),
    (dict(stages=(2, 3), reduce_factor=[None, 2]), r'reduce_factor=\[None, 2\] has None'),
    (dict(stages=None, aggregation=[None, 'sum']), r"aggregation=\[None, 'sum'\] has 'sum'"),
    (dict(reduce_factor=[2, 0]), r'reduce_factor=\[2, 0\] has 0; allowed: positive integers'),
    (dict(reduce_factor=1.5), r'reduce_factor=1.5 must be a positive integer'),
    (dict(expansion=2, reduce_factor=[2]),
     r'reduce_factor=\[2\] and expansion=2 contradict each other'),
    (dict(stages='last'), r"stages='last' must be a stage index, a list of them or None"),
    (dict(stages=()), r'stages=\(\) must be a stage index, a list of them or None'),
])
def test_contradicting_per_stage_settings_are_refused_before_the_backbone_is_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RKAN(backbone=dict(type='mmdet.NoSuchNet'), **kwargs)


# n_convs and shortcut through the wrapper.


def test_n_convs_and_shortcut_reach_every_branch():
    torch.manual_seed(0)
    model = RKAN(backbone=copy.deepcopy(TINY_RESNET), stages=(2, 3), n_convs=2, shortcut=True,
                 basis='legendre')
    for index, in_channels, out_channels in (('2', 32, 64), ('3', 64, 128)):
        branch = model.branches[index]
        assert len(branch.kan1) == 2 and all(c.basis == 'legendre' for c in branch.kan1)
        assert branch.conv2.in_channels == in_channels  # 2 x C_in / 2
        assert (branch.shortcut_conv.in_channels, branch.shortcut_conv.out_channels) == \
            (in_channels, out_channels)
        assert branch.shortcut_conv.stride == (2, 2)
    assert isinstance(model.branches['3'].kan2, KANConv2d)
    model.train()
    _random_loss(model(torch.randn(2, 3, 32, 32))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f'{name} is unused'


# DenseNet: the last stage's branch joins after the final norm, before the ReLU.


def _densenet_by_hand(densenet, branches, x):
    """mmpretrain's DenseNet forward, written out, with the RKAN branches added where the
    authors add them: after the transition of stages 0-2, after the final norm (their
    ``norm5``) and before the ReLU in the last stage."""
    x = densenet.stem(x)
    outs = []
    for index, (stage, transition) in enumerate(zip(densenet.stages, densenet.transitions)):
        stage_in = x
        x = stage(x)
        branch = branches.get(index)
        if index < len(densenet.stages) - 1:
            x = transition(x)
            if branch is not None:
                x = branch(stage_in, x)
        else:
            norm, act = transition
            x = norm(x)
            if branch is not None:
                x = branch(stage_in, x)
            x = act(x)
        outs.append(x)
    return outs


def _plain_twin(model: RKAN):
    """The wrapped DenseNet without the hooks, with the same weights, in eval mode
    (mmpretrain's DenseNet.train returns None: not chained)."""
    plain = MODELS.build(copy.deepcopy(TINY_DENSENET))
    plain.load_state_dict(model.backbone.state_dict())
    plain.eval()
    return plain


@pytest.mark.parametrize('stages', [(3, ), (1, 3)])
def test_densenet_branch_joins_before_the_final_relu(stages):
    torch.manual_seed(0)
    model = RKAN(backbone=copy.deepcopy(TINY_DENSENET), stages=stages)
    model.eval()
    plain = _plain_twin(model)
    branches = {index: model.branches[str(index)] for index in stages}
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    expected = _densenet_by_hand(plain, branches, x)
    assert len(outs) == len(expected) == 4
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # The ReLU comes last: no negative output, which a branch added after it would give.
    assert (outs[-1] >= 0).all()
    after_relu = plain.transitions[3](plain.stages[3](expected[2]))
    after_relu = model.branches['3'](expected[2], after_relu)
    assert (after_relu < 0).any()
    assert not torch.allclose(after_relu, outs[-1])


def test_densenet_last_stage_is_measured_at_the_final_norm():
    model = RKAN(backbone=copy.deepcopy(TINY_DENSENET), stages=(3, ))
    entry, exit_ = model._stage_modules[3]
    assert entry is model.backbone.stages[3]
    assert exit_ is model.backbone.transitions[3][0]
    # The last dense block: 16 channels in, 2 x 8 more out, stride 1.
    branch = model.branches['3']
    assert (branch.conv1.in_channels, branch.conv2.out_channels, branch.kan1.stride) == (16, 32, 1)


def test_densenet_with_a_silent_branch_is_the_plain_densenet():
    torch.manual_seed(0)
    model = RKAN(backbone=copy.deepcopy(TINY_DENSENET), stages=(3, ))
    model.eval()
    plain = _plain_twin(model)
    torch.nn.init.zeros_(model.branches['3'].norm2.weight)
    torch.nn.init.zeros_(model.branches['3'].norm2.bias)
    x = torch.randn(1, 3, 64, 64)
    for out, ref in zip(model(x), plain(x)):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
