"""KANLinear (efficient-KAN's B-spline KAN layer) and BSplineKAN, the ViT + KAN mixer."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.interpolate import BSpline

from mmrkan.models.layers import BSplineKAN, KANLinear


def scipy_basis(x: np.ndarray, grid_size: int, spline_order: int, low: float, high: float) -> np.ndarray:
    """efficient-KAN's bases from scipy: uniform knots extended by ``spline_order`` intervals."""
    h = (high - low) / grid_size
    knots = low + h * np.arange(-spline_order, grid_size + spline_order + 1)
    return np.stack([BSpline.basis_element(knots[j:j + spline_order + 2], extrapolate=False)(x)
                     for j in range(grid_size + spline_order)], -1)


@pytest.mark.parametrize('grid_size, spline_order, standalone, bias', [
    (5, 3, True, False),   # efficient-KAN's defaults
    (1, 1, False, True),   # the paper's ViT + KAN counts (configs/kat/vit-kan-*.py)
    (3, 2, True, True),
])
def test_forward_is_the_base_term_plus_the_scaled_splines(grid_size, spline_order, standalone, bias):
    torch.manual_seed(0)
    layer = KANLinear(4, 3, grid_size=grid_size, spline_order=spline_order,
                      enable_standalone_scale_spline=standalone, bias=bias, grid_range=(-1.5, 2.0)).double()
    with torch.no_grad():
        for param in layer.parameters():
            param.add_(torch.randn_like(param))
    x = torch.rand(7, 4, dtype=torch.float64) * 4.5 - 2.0  # inside and outside the grid
    basis = np.nan_to_num(scipy_basis(x.numpy(), grid_size, spline_order, -1.5, 2.0))
    spline = layer.spline_weight.detach().numpy()
    if standalone:
        spline = spline * layer.spline_scaler.detach().numpy()[..., None]
    expected = (F.silu(x).numpy() @ layer.base_weight.detach().numpy().T
                + np.einsum('bij,oij->bo', basis, spline))
    if bias:
        expected = expected + layer.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('grid_size, spline_order, standalone, bias, per_edge', [
    (5, 3, True, False, 5 + 3 + 2), (1, 1, False, True, 1 + 1 + 1), (2, 3, False, False, 2 + 3 + 1)])
def test_parameters_per_edge(grid_size, spline_order, standalone, bias, per_edge):
    layer = KANLinear(6, 10, grid_size=grid_size, spline_order=spline_order,
                      enable_standalone_scale_spline=standalone, bias=bias)
    assert sum(p.numel() for p in layer.parameters()) == 6 * 10 * per_edge + (10 if bias else 0)


@pytest.mark.parametrize('grid_size, spline_order', [(1, 1), (5, 3), (3, 2)])
def test_initial_splines_interpolate_efficient_kans_noise_at_the_knots(grid_size, spline_order):
    torch.manual_seed(0)
    layer = KANLinear(6, 5, grid_size=grid_size, spline_order=spline_order, scale_noise=0.1)
    # efficient-KAN's draws, in its order: the base weights, then the noise at the G + 1 knots.
    torch.manual_seed(0)
    torch.nn.init.kaiming_uniform_(torch.empty(5, 6), a=5 ** 0.5)
    noise = (torch.rand(grid_size + 1, 6, 5) - 1 / 2) * 0.1 / grid_size
    knots = torch.linspace(-1, 1, grid_size + 1)
    values = torch.einsum('kij,oij->kio', layer.b_splines(knots[:, None].expand(-1, 6)),
                          layer.spline_weight.detach())
    torch.testing.assert_close(values, noise, rtol=1e-4, atol=1e-6)
    assert layer.spline_scaler.abs().max() <= 6 ** -0.5  # kaiming-uniform, a = sqrt(5)


def test_gradients_reach_every_parameter_and_the_input():
    layer = KANLinear(4, 3, bias=True)
    x = torch.randn(2, 5, 4, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize('kwargs, message', [
    (dict(grid_size=0), 'grid_size=0 must be an int >= 1'),
    (dict(spline_order=0), 'spline_order=0 must be an int >= 1'),
    (dict(spline_order=2.0), r'spline_order=2.0 must be an int >= 1'),
    (dict(grid_range=(1.0, -1.0)), r'grid_range=\(1.0, -1.0\) must be \(low, high\) with low < high'),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=f'KANLinear: {message}'):
        KANLinear(4, 3, **kwargs)


def test_wrong_input_width_is_a_clear_error():
    with pytest.raises(ValueError, match='the input has 5 features in its last dimension, the layer '
                       'in_features=4'):
        KANLinear(4, 3)(torch.randn(2, 5))


def test_bspline_kan_is_two_kan_layers_of_the_mlps_widths():
    torch.manual_seed(0)
    mixer = BSplineKAN(8, 32, grid_size=2, spline_order=1, bias=True).eval()
    assert (mixer.fc1.in_features, mixer.fc1.out_features) == (8, 32)
    assert (mixer.fc2.in_features, mixer.fc2.out_features) == (32, 8)
    assert mixer.fc1.grid_size == mixer.fc2.grid_size == 2 and mixer.fc2.bias is not None
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(mixer(x), mixer.fc2(mixer.fc1(x)))
