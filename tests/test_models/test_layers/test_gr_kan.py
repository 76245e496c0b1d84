"""GRKAN: KAT's channel mixer, its order, initialisation and errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmrkan.models.layers import GRKAN, rational_gain
from mmrkan.ops import GroupRational, group_rational


def test_structure_and_initial_rationals():
    kan = GRKAN(16, 64, num_groups=8)
    assert (kan.fc1.in_features, kan.fc1.out_features) == (16, 64)
    assert (kan.fc2.in_features, kan.fc2.out_features) == (64, 16)
    assert kan.fc1.bias is not None and kan.fc2.bias is not None
    assert kan.rational1.init == 'identity' and kan.rational2.init == 'swish'
    assert kan.rational1.weight_denominator.shape == (8, 4)
    assert kan.rational2.weight_numerator.shape == (1, 6)
    # 2 linears + 2 x (6 shared numerator + 8 x 4 denominator) coefficients.
    assert sum(p.numel() for p in kan.parameters()) == 16 * 64 + 64 + 64 * 16 + 16 + 2 * 38


def test_forward_applies_rational1_fc1_rational2_fc2_in_order():
    torch.manual_seed(0)
    kan = GRKAN(16, 32, num_groups=4)
    with torch.no_grad():  # make rational1 differ from the identity so the order matters
        kan.rational1.weight_numerator.copy_(torch.tensor([[0.1, 0.9, 0.2, -0.1, 0.0, 0.01]]))
        kan.rational1.weight_denominator.uniform_(-0.5, 0.5)
    x = torch.randn(2, 5, 16)

    def rational(module, t):
        return group_rational(t, module.weight_numerator, module.weight_denominator)

    expected = F.linear(
        rational(kan.rational2, F.linear(rational(kan.rational1, x), kan.fc1.weight,
                                         kan.fc1.bias)), kan.fc2.weight, kan.fc2.bias)
    torch.testing.assert_close(kan(x), expected)


def test_act_init_selects_the_second_rational():
    assert GRKAN(8, 16, act_init='gelu').rational2.init == 'gelu'


@pytest.mark.parametrize('embed_dims, hidden, name', [(12, 64, 'embed_dims'),
                                                      (16, 60, 'feedforward_channels')])
def test_channels_not_divisible_by_groups_is_a_clear_error(embed_dims, hidden, name):
    with pytest.raises(ValueError, match=f'{name}=.*num_groups=8'):
        GRKAN(embed_dims, hidden, num_groups=8)


def test_rational_gain_is_one_over_the_second_moment_under_a_standard_normal():
    assert rational_gain(GroupRational(8, init='identity')) == pytest.approx(1.0, abs=1e-9)
    swish = GroupRational(8, init='swish')
    # Independent check: trapezoid integral on a fine grid.
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    with torch.no_grad():
        f = swish(x[:, None].repeat(1, 8))[:, 0]
    density = torch.exp(-x**2 / 2) / math.sqrt(2 * math.pi)
    expected = 1 / torch.trapezoid(f**2 * density, x).item()
    assert rational_gain(swish) == pytest.approx(expected, rel=1e-7)
    # The authors' code uses 2.8178; the exact 1 / E[silu(x)^2] is 2.8108 (docs/ops.md).
    assert rational_gain(swish) == pytest.approx(2.8178, rel=5e-3)


def test_variance_preserving_init_keeps_unit_variance():
    torch.manual_seed(0)
    kan = GRKAN(256, 1024, variance_preserving_init=True)
    kan.init_weights()
    assert kan.fc1.weight.std().item() == pytest.approx(math.sqrt(1 / 256), rel=0.02)
    assert kan.fc2.weight.std().item() == pytest.approx(math.sqrt(2.81 / 1024), rel=0.02)
    assert kan.fc1.bias.abs().max() == 0 and kan.fc2.bias.abs().max() == 0
    with torch.no_grad():
        out = kan(torch.randn(4096, 256))
    assert out.var().item() == pytest.approx(1.0, abs=0.1)


def test_default_init_leaves_the_linears_to_init_cfg():
    torch.manual_seed(0)
    kan = GRKAN(64, 256, init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02))
    kan.init_weights()
    assert kan.fc2.weight.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize('order', [(3, 2), (5, 4), (7, 6)])
def test_rational_order_and_inits_reach_both_rationals(order):
    kan = GRKAN(16, 64, num_groups=4, act_init='random', rational1_init='swish',
                rational_order=order)
    m, n = order
    assert (kan.rational1.init, kan.rational2.init) == ('swish', 'random')
    assert kan.rational1.order == kan.rational2.order == order
    assert kan.rational2.weight_numerator.shape == (1, m + 1)
    assert kan.rational2.weight_denominator.shape == (4, n)
    assert sum(p.numel() for p in kan.parameters()) == 16 * 64 * 2 + 64 + 16 + 2 * (m + 1 + 4 * n)


def test_per_channel_gives_every_channel_its_own_rational():
    kan = GRKAN(16, 64, num_groups='per_channel', per_group_numerator=True)
    assert kan.rational1.weight_denominator.shape == (16, 4)
    assert kan.rational1.weight_numerator.shape == (16, 6)
    assert kan.rational2.weight_denominator.shape == (64, 4)
    assert kan.rational2.weight_numerator.shape == (64, 6)
    x = torch.randn(2, 16)
    with torch.no_grad():  # channel 3's rational is its own: only that input channel changes
        kan.rational1.weight_numerator[3, 1] = 2.0
    torch.testing.assert_close(kan.rational1(x)[:, 3], 2 * x[:, 3])
    torch.testing.assert_close(kan.rational1(x)[:, [0, 1, 2, 4]], x[:, [0, 1, 2, 4]])


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_groups='ungrouped'), r"num_groups='ungrouped' is not supported; allowed: a positive "
     r"int dividing the channels, or 'per_channel'"),
    (dict(num_groups=0), 'num_groups=0 is not supported'),
    (dict(rational_order=(4, 4)), r'rational_order=\(4, 4\) is not supported; allowed: \(3, 2\), '
     r'\(5, 4\), \(7, 6\)'),
    (dict(rational1_init='xavier'), r"rational1_init='xavier' is not supported; allowed: "
     r"\('identity', 'swish', 'gelu', 'random'\)"),
    (dict(act_init='relu'), r"act_init='relu' is not supported"),
])
def test_unsupported_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=f'GRKAN: {message}'):
        GRKAN(16, 64, **kwargs)
