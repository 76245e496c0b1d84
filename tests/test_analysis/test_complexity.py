"""FLOP counting: the KAN-op handles add exactly their documented cost to mmengine's count, and
the paper models have the paper's parameters and FLOPs."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from torch import nn

from mmrkan.analysis import (RATIONAL_FLOPS_PER_ELEMENT, build_task_model,
                             kan_conv2d_flops_per_output, model_complexity,
                             rational_flops_per_element)
from mmrkan.ops import GroupRational, KANConv2d

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def mmengine_flops(model: nn.Module, inputs: tuple) -> int:
    """mmengine's own count, in which the KAN ops count as zero."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analyzer.total()


def build(config: str) -> nn.Module:
    return build_task_model(Config.fromfile(osp.join(REPO, config))).eval()


def test_documented_costs():
    assert RATIONAL_FLOPS_PER_ELEMENT == 11  # 5 + 4 Horner multiply-adds, |x|, one division
    assert kan_conv2d_flops_per_output(4) == 81  # degree 3: 9 taps x (1 + 1 + 3 + 4)
    assert kan_conv2d_flops_per_output(3) == 63  # degree 2: 9 taps x (1 + 1 + 2 + 3)
    assert kan_conv2d_flops_per_output(2) == 36  # degree 1: no recursion
    assert kan_conv2d_flops_per_output(3, 'rbf') == 9 * 13
    with pytest.raises(ValueError, match='basis'):
        kan_conv2d_flops_per_output(3, 'spline')


def test_group_rational_flops_in_the_kat_demo_classifier():
    model = build('configs/demo/kat-micro_shapes-imagenet-64px.py')
    inputs = (torch.randn(1, 3, 64, 64), )
    elements = []
    handles = [
        module.register_forward_hook(lambda m, args, out: elements.append(out.numel()))
        for module in model.modules() if isinstance(module, GroupRational)
    ]
    with torch.no_grad():
        model(*inputs)
    for handle in handles:
        handle.remove()
    # 4 blocks x 65 tokens x (64 + 256 channels)
    assert sum(elements) == 4 * 65 * (64 + 256)

    complexity = model_complexity(model, inputs)
    rational_flops = RATIONAL_FLOPS_PER_ELEMENT * sum(elements)
    assert complexity.flops_by_operator['group_rational'] == rational_flops
    assert complexity.flops - mmengine_flops(model, inputs) == rational_flops
    assert complexity.params == sum(p.numel() for p in model.parameters())
    assert 'mmrkan::group_rational_forward' not in complexity.uncounted_ops


@pytest.mark.parametrize('order, per_element', [((3, 2), 7), ((5, 4), 11), ((7, 6), 15)])
def test_group_rational_flops_follow_the_order(order, per_element):
    assert rational_flops_per_element(order) == per_element
    model = nn.Sequential(GroupRational(4, init='random', order=order, per_group_numerator=True))
    complexity = model_complexity(model, (torch.randn(2, 5, 8), ))
    assert complexity.flops_by_operator['group_rational'] == per_element * 2 * 5 * 8


class TwoKANConvs(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.kan1 = KANConv2d(degree=3, stride=2)
        self.kan2 = KANConv2d(degree=2)
        self.rbf = KANConv2d(basis='rbf', num_bumps=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.kan1(x)
        return self.kan2(y) + self.rbf(y)


def test_kan_conv2d_flops_per_output_element():
    model = TwoKANConvs()
    inputs = (torch.randn(2, 4, 9, 9), )
    outputs = 2 * 4 * 5 * 5  # stride 2: 9x9 -> 5x5
    complexity = model_complexity(model, inputs)
    assert complexity.flops_by_operator['kan_conv2d'] == (81 + 63 + 117) * outputs
    assert complexity.flops - mmengine_flops(model, inputs) == (81 + 63 + 117) * outputs


def test_kan_conv2d_flops_of_the_other_families():
    # legendre D = 3: 9 taps x (base 1 + tanh 1 + recursion 1 + 2 * 2 + weights 4)
    assert kan_conv2d_flops_per_output(4, 'legendre') == 9 * 11
    assert kan_conv2d_flops_per_output(4, normalization='arctan') == 9 * (1 + 5 + 3 + 4)
    assert kan_conv2d_flops_per_output(4, base_activation='silu') == 81 + 9 * 2
    # b_spline G = 3, k = 3: 9 order-0 intervals (2 each), then 8 + 7 + 6 functions (3 each)
    assert kan_conv2d_flops_per_output(6, 'b_spline', spline_order=3) == 9 * (1 + 81 + 6)
    model = nn.Sequential(KANConv2d(basis='b_spline', degree=3, grid_size=3),
                          KANConv2d(basis='legendre', normalization='arctan',
                                    skip_activation=False))
    complexity = model_complexity(model, (torch.randn(1, 2, 4, 4), ))
    # legendre, arctan, silu: 9 x (1 + 2 + 5 + 5 + 4)
    assert complexity.flops_by_operator['kan_conv2d'] == (9 * 88 + 9 * 17) * 2 * 4 * 4


class Attention(nn.Module):

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def test_attention_products_only_on_request():
    inputs = (torch.randn(3, 2, 5, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 4))
    assert model_complexity(Attention(), inputs).flops == 0
    counted = model_complexity(Attention(), inputs, count_attention=True)
    assert counted.flops == 3 * 2 * 5 * 7 * (8 + 4)  # q k^T, then the weights times v


@pytest.mark.parametrize('config, params, paper_gflops', [
    ('configs/rkan/rkanet-50_8xb32_in1k.py', 27_135_115, 4.29),
    ('configs/kat/kat-small_8xb128_in1k.py', 22_051_576, 4.35),
])
def test_paper_models_at_224(config, params, paper_gflops):
    complexity = model_complexity(build(config), (torch.randn(1, 3, 224, 224), ))
    assert complexity.params == params
    assert complexity.flops / 1e9 == pytest.approx(paper_gflops, rel=0.05)
