"""ViTKAN: the KAT paper's "ViT + KAN" comparison (mmpretrain's ViT, B-spline KAN MLPs).

The paper's counts of the three configs (12.8 / 50.4 / 199.8 M) are checked by
tests/test_paper_rows.py (table ``KAT ImageNet``).
"""
import pytest
import torch
from mmpretrain.models.backbones import VisionTransformer

from mmrkan.models.backbones import ViTKAN
from mmrkan.models.layers import BSplineKAN, KANLinear
from mmrkan.registry import TASK_SCOPES, task_registry

ARCH = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=64)
PAPER_KAN = dict(grid_size=1, spline_order=1, enable_standalone_scale_spline=False, bias=True)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('kan_cfg, per_edge, biases', [
    (PAPER_KAN, 3, 64 + 16),
    (dict(), 5 + 3 + 2, 0),  # efficient-KAN's defaults: G = 5, k = 3, a scaler, no bias
])
def test_each_mlp_becomes_a_kan_of_its_widths(kan_cfg, per_edge, biases):
    vit = VisionTransformer(arch=ARCH, img_size=32, patch_size=8)
    model = ViTKAN(arch=ARCH, img_size=32, patch_size=8, kan_cfg=kan_cfg)
    mlp = num_params(vit.layers[0].ffn.layers)
    assert mlp == 2 * 16 * 64 + 64 + 16
    assert num_params(model) == num_params(vit) + 2 * (2 * 16 * 64 * per_edge + biases - mlp)
    for layer in model.layers:
        kan = layer.ffn.layers
        assert type(kan) is BSplineKAN
        assert (kan.fc1.in_features, kan.fc1.out_features, kan.fc2.out_features) == (16, 64, 16)
    assert not any(isinstance(m, torch.nn.Linear) and m.out_features == 64 for m in model.modules())


def test_forward_adds_the_kan_to_the_residual_and_trains():
    torch.manual_seed(0)
    model = ViTKAN(arch=ARCH, img_size=32, patch_size=8, kan_cfg=PAPER_KAN, out_type='avg_featmap')
    x = torch.randn(2, 3, 32, 32)
    block = model.layers[0]
    tokens = torch.randn(2, 17, 16)
    after_attention = tokens + block.attn(block.ln1(tokens))
    expected = after_attention + block.ffn.layers(block.ln2(after_attention))
    torch.testing.assert_close(block(tokens), expected)
    (feature, ) = model(x)
    assert feature.shape == (2, 16)
    feature.square().sum().backward()
    kan_params = [p for m in model.modules() if isinstance(m, KANLinear) for p in m.parameters()]
    assert len(kan_params) == 2 * 2 * 3 and all(p.grad.abs().sum() > 0 for p in kan_params)


def test_the_paper_arches_build_through_every_registry():
    for scope in TASK_SCOPES:
        model = task_registry(scope).build(dict(type='ViTKAN', arch=ARCH, img_size=32, patch_size=8))
        assert type(model) is ViTKAN


@pytest.mark.parametrize('layer_cfgs', [dict(act_cfg=dict(type='ReLU')), [dict(), dict(num_fcs=3)]])
def test_mlp_settings_without_a_kan_meaning_are_refused(layer_cfgs):
    with pytest.raises(ValueError, match=r"layer_cfgs sets \['(act_cfg|num_fcs)'\]: the MLP is a B-spline KAN"):
        ViTKAN(arch=ARCH, layer_cfgs=layer_cfgs)


def test_bad_kan_settings_are_clear_errors():
    with pytest.raises(ValueError, match='KANLinear: grid_size=0 must be an int >= 1'):
        ViTKAN(arch=ARCH, kan_cfg=dict(grid_size=0))
