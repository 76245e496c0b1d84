"""RKANBlock: the residual KAN branch of one stage and its aggregations."""
import math

import pytest
import torch

from mmrkan.models.layers import RKANBlock
from mmrkan.ops import KANConv2d


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_stage4_branch_of_resnet50_has_the_papers_parameter_count():
    # 524,288 + 1,048,576 convs, 1,024 + 4,096 BN, 54 + 45 KAN (docs/models.md, RKANet).
    block = RKANBlock(1024, 2048, 512, stride=2)
    assert _num_params(block) == 1_578_083


def test_stage3_branch_without_second_kan_conv_has_the_papers_parameter_count():
    block = RKANBlock(512, 1024, 256, stride=2, out_kan_cfg=None)
    assert block.kan2 is None
    assert _num_params(block) == 395_830


def test_layer_order_and_stride():
    block = RKANBlock(8, 16, 4, stride=2)
    assert isinstance(block.kan1, KANConv2d) and block.kan1.stride == 2
    assert block.kan1.degree == 3 and block.kan2.degree == 2 and block.kan2.stride == 1
    assert block.kan1.poly_weight.shape == (9, 4) and block.kan2.poly_weight.shape == (9, 3)
    x = torch.randn(2, 8, 8, 8)
    expected = block.norm2(block.kan2(block.act(block.conv2(
        block.norm1(block.kan1(block.act(block.conv1(x))))))))
    torch.testing.assert_close(block.residual(x), expected)
    assert expected.shape == (2, 16, 4, 4)


@pytest.mark.parametrize('aggregation', ['addition', 'gating', 'se'])
def test_aggregations(aggregation):
    torch.manual_seed(0)
    block = RKANBlock(8, 16, 4, stride=2, aggregation=aggregation)
    x = torch.randn(2, 8, 8, 8)
    stage_out = torch.randn(2, 16, 4, 4)
    r = block.residual(x)
    if aggregation == 'addition':
        expected = stage_out + r
    elif aggregation == 'gating':
        gate = torch.sigmoid(block.gate(r))
        expected = stage_out * gate + r * (1 - gate)
    else:
        # The authors' SE: pool -> 1x1 conv (no bias) -> ReLU -> 1x1 conv (no bias) -> sigmoid.
        assert block.se.fc1.bias is None and block.se.fc1.out_channels == 16 // 16
        squeezed = torch.relu(block.se.fc1(r.mean(dim=(2, 3), keepdim=True)))
        expected = stage_out + r * torch.sigmoid(block.se.fc2(squeezed))
    out = block(x, stage_out)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_kan_cfgs_configure_each_kan_convolution():
    block = RKANBlock(8, 16, 4, stride=1, kan_cfg=dict(basis='rbf', num_bumps=3),
                      out_kan_cfg=dict(basis='b_spline', degree=2, grid_size=4,
                                       normalization='tanh'))
    assert (block.kan1.basis, block.kan1.num_bumps) == ('rbf', 3)
    assert block.kan1.poly_weight.shape == (9, 3)
    assert (block.kan2.basis, block.kan2.grid_size, block.kan2.degree) == ('b_spline', 4, 2)
    assert block.kan2.options.normalization == 'tanh'
    assert block.kan2.poly_weight.shape == (9, 4 + 2)
    assert block(torch.randn(2, 8, 6, 6), torch.zeros(2, 16, 6, 6)).shape == (2, 16, 6, 6)


def test_n_convs_concatenates_the_kan_convolutions_of_the_first_layer():
    torch.manual_seed(0)
    block = RKANBlock(8, 16, 4, stride=2, n_convs=3)
    assert len(block.kan1) == 3 and all(conv.stride == 2 for conv in block.kan1)
    assert block.norm1.num_features == 12 and block.conv2.in_channels == 12
    assert block.kan2.stride == 1  # one convolution: its output has the stage's channels
    x = torch.randn(2, 8, 8, 8)
    hidden = block.act(block.conv1(x))
    # Convolution by convolution: channels 0-3 from the first kernel, 4-7 from the second...
    expected = torch.cat([conv(hidden) for conv in block.kan1], dim=1)
    assert not torch.allclose(expected[:, :4], expected[:, 4:8])
    torch.testing.assert_close(block.kan1(hidden), expected)
    expected = block.norm2(block.kan2(block.act(block.conv2(block.norm1(expected)))))
    torch.testing.assert_close(block.residual(x), expected)


def test_n_convs_count_on_resnet50_stage4():
    # The inner BN and the expand conv read 2 x 512 channels; one more degree-3 kernel (54).
    block = RKANBlock(1024, 2048, 512, stride=2, n_convs=2)
    assert _num_params(block) == 1_578_083 + 1024 + 1_048_576 + 54


@pytest.mark.parametrize('stride', [1, 2])
def test_shortcut_projects_the_stage_input(stride):
    torch.manual_seed(0)
    block = RKANBlock(8, 16, 4, stride=stride, shortcut=True)
    assert block.shortcut_conv.stride == (stride, stride) and block.shortcut_conv.bias is None
    x = torch.randn(2, 8, 8, 8)
    plain = block.norm2(block.kan2(block.act(block.conv2(
        block.norm1(block.kan1(block.act(block.conv1(x))))))))
    expected = plain + block.shortcut_norm(block.shortcut_conv(x))
    torch.testing.assert_close(block.residual(x), expected)
    assert expected.shape == (2, 16, 8 // stride, 8 // stride)
    # 1x1 conv C_in -> C_out and its BN.
    assert _num_params(block) - _num_params(RKANBlock(8, 16, 4, stride=stride)) == 8 * 16 + 2 * 16


def _uniform_std(fan_in: int) -> float:
    """PyTorch's default nn.Conv2d init, kaiming-uniform with a = sqrt(5): U(-b, b) with
    b = 1/sqrt(fan_in), whose std is b/sqrt(3)."""
    return 1 / math.sqrt(fan_in) / math.sqrt(3)


def test_branch_convolutions_start_as_the_authors():
    # RKANet-50's stage-4 branch: std 0.0180 (1024 -> 512) and 0.0255 (512 -> 2048).
    torch.manual_seed(0)
    block = RKANBlock(1024, 2048, 512, stride=2)
    for conv, fan_in, expected in ((block.conv1, 1024, 0.0180), (block.conv2, 512, 0.0255)):
        bound = 1 / math.sqrt(fan_in)
        assert _uniform_std(fan_in) == pytest.approx(expected, abs=1e-4)
        assert conv.weight.std().item() == pytest.approx(_uniform_std(fan_in), rel=0.01)
        assert conv.weight.abs().max().item() <= bound
        assert conv.weight.abs().max().item() > 0.999 * bound  # uniform up to the bound
        assert conv.bias is None
    for norm in (block.norm1, block.norm2):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))


def test_branch_kan_convolutions_start_as_the_authors():
    # Kaiming-normal base (fan-in 9): std sqrt(2/9); poly N(0, 1/sqrt(9 (D+1))); scaler 1.
    # Few values per layer: pooled over many blocks.
    torch.manual_seed(0)
    blocks = [RKANBlock(4, 8, 2) for _ in range(400)]
    pooled = {
        name: torch.cat([dict(b.named_parameters())[name].flatten() for b in blocks])
        for name in ('kan1.base_weight', 'kan1.poly_weight', 'kan2.base_weight', 'kan2.poly_weight')
    }
    expected = {'kan1.base_weight': math.sqrt(2 / 9), 'kan1.poly_weight': 1 / math.sqrt(9 * 4),
                'kan2.base_weight': math.sqrt(2 / 9), 'kan2.poly_weight': 1 / math.sqrt(9 * 3)}
    for name, std in expected.items():
        assert pooled[name].std().item() == pytest.approx(std, rel=0.05), name
        assert pooled[name].mean().item() == pytest.approx(0, abs=0.1 * std), name
    for block in blocks[:3]:
        assert torch.equal(block.kan1.scaler, torch.ones_like(block.kan1.scaler))
        assert torch.equal(block.kan2.scaler, torch.ones_like(block.kan2.scaler))


@pytest.mark.parametrize('aggregation', ['addition', 'gating'])
def test_init_weights_keeps_the_authors_initialisation(aggregation):
    block = RKANBlock(64, 128, 32, aggregation=aggregation)
    before = {name: value.clone() for name, value in block.state_dict().items()}
    block.init_weights()
    for name, value in block.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize('kwargs,match', [
    (dict(aggregation='concat'), r"aggregation='concat' is not supported; allowed"),
    (dict(kan_cfg=dict(basis='fourier')), r"basis='fourier' is not supported; allowed"),
    (dict(kan_cfg=dict(stride=2)), r"kan_cfg has 'stride'=2, not a setting it takes; allowed"),
    (dict(out_kan_cfg=dict(order=2)), r"out_kan_cfg has 'order'=2, not a setting it takes"),
    (dict(kan_cfg='chebyshev'), r"kan_cfg='chebyshev' must be a dict of KANConv2d arguments"),
    (dict(n_convs=0), r'n_convs=0 must be a positive integer'),
    (dict(shortcut='yes'), r"shortcut='yes' must be True or False"),
])
def test_bad_settings_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RKANBlock(8, 16, 4, **kwargs)


def test_shape_mismatch_with_the_stage_is_a_clear_error():
    block = RKANBlock(8, 16, 4, stride=2)
    with pytest.raises(RuntimeError, match='RKAN branch gives'):
        block(torch.randn(1, 8, 9, 9), torch.zeros(1, 16, 4, 4))
