"""PAU (Molina et al.): one rational for a whole layer, the KAT paper's activation ablation."""
import pytest
import torch
import torch.nn.functional as F

from mmrkan.models.layers import PAU
from mmrkan.ops import GroupRational
from mmrkan.registry import TASK_SCOPES, task_registry


def test_one_rational_of_ten_coefficients_on_any_shape():
    pau = PAU()
    assert {name: tuple(p.shape) for name, p in pau.named_parameters()} == {
        'weight_numerator': (1, 6), 'weight_denominator': (1, 4)}
    x = torch.randn(2, 3, 5, 7)  # NCHW as much as tokens-last: every element, one function
    torch.testing.assert_close(pau(x), pau(x.reshape(-1, 1)).reshape(x.shape))


def test_default_init_is_the_pau_authors_fit_of_leaky_relu():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64).reshape(-1, 1)
    error = (PAU().double()(x) - F.leaky_relu(x, 0.01)).abs()
    # The fit's largest deviation is its offset at 0 (a0 = 0.0336); far from 0 it is tighter.
    assert error.max() < 0.035 and error[x.abs() > 1].max() < 0.02
    assert error.max() > 0.03, 'not the leaky ReLU fit'


@pytest.mark.parametrize('init', ['identity', 'swish', 'gelu', 'random'])
def test_group_rational_inits_are_accepted(init):
    torch.manual_seed(0)
    pau = PAU(init=init, order=(3, 2))
    torch.manual_seed(0)
    expected = GroupRational(1, init=init, order=(3, 2))
    torch.testing.assert_close(pau.weight_numerator, expected.weight_numerator)
    torch.testing.assert_close(pau.weight_denominator, expected.weight_denominator)
    assert repr(pau) == f"PAU(init='{init}', order=(3, 2))"


def test_builds_as_an_mlp_activation_in_every_registry():
    for scope in TASK_SCOPES:
        assert type(task_registry(scope).build(dict(type='PAU'))) is PAU


def test_unsupported_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"PAU: init='leaky_relu' is fitted for the order \(5, 4\) "
                       r"only, got order=\(7, 6\)"):
        PAU(order=(7, 6))
    with pytest.raises(ValueError, match=r"PAU: init='relu' is not supported; allowed: "
                       r"\('leaky_relu', 'identity', 'swish', 'gelu', 'random'\)"):
        PAU(init='relu')
    with pytest.raises(ValueError, match=r'PAU: order=\(2, 2\) is not supported'):
        PAU(order=(2, 2))
