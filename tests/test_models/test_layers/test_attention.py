"""The attention plug-ins (SE, ECA, CBAM, shuffle attention, SimAM, ELA) against their papers."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS

from mmrkan.models.layers import (CBAM, EfficientChannelAttention, EfficientLocalAttention,
                                  ShuffleAttention, SimAM, SqueezeExcitation)

PLUGINS = {
    'SqueezeExcitation': (SqueezeExcitation, 'se'),
    'EfficientChannelAttention': (EfficientChannelAttention, 'eca'),
    'CBAM': (CBAM, 'cbam'),
    'ShuffleAttention': (ShuffleAttention, 'sa'),
    'SimAM': (SimAM, 'simam'),
    'EfficientLocalAttention': (EfficientLocalAttention, 'ela'),
}


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _randomise(module: torch.nn.Module) -> None:
    """Random values everywhere, so that zero or unit initial values hide nothing."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_()


@pytest.mark.parametrize('name', PLUGINS)
def test_registered_in_every_task_registry_with_the_block_name(name):
    cls, abbr = PLUGINS[name]
    for registry in (MMDET_MODELS, MMSEG_MODELS, MMPRETRAIN_MODELS):
        assert registry.get(name) is cls
    assert cls._abbr_ == abbr


def test_squeeze_excitation_matches_the_formula_without_biases():
    torch.manual_seed(0)
    module = SqueezeExcitation(32, ratio=4)
    assert module.fc1.bias is None and module.fc2.bias is None
    assert _num_params(module) == 2 * 32 * 8
    x = torch.randn(2, 32, 5, 6)
    w1, w2 = module.fc1.weight.flatten(1), module.fc2.weight.flatten(1)
    scale = torch.sigmoid(F.relu(x.mean((2, 3)) @ w1.T) @ w2.T)
    torch.testing.assert_close(module(x), x * scale[:, :, None, None])


def test_squeeze_excitation_with_biases_and_explicit_width():
    module = SqueezeExcitation(24, ratio=None, squeeze_channels=7, bias=True)
    assert _num_params(module) == 24 * 7 + 7 + 7 * 24 + 24


@pytest.mark.parametrize('channels,kernel', [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_adaptive_kernel_size(channels, kernel):
    # k = |(log2 C + 1) / 2| rounded to the odd number above (the ECA paper, gamma 2, b 1).
    module = EfficientChannelAttention(channels)
    assert module.conv.kernel_size == (kernel, )
    assert _num_params(module) == kernel


def test_eca_is_a_convolution_across_channels():
    torch.manual_seed(0)
    module = EfficientChannelAttention(16, kernel_size=5)
    _randomise(module)
    x = torch.randn(2, 16, 4, 3)
    pooled = x.mean((2, 3))
    weight = module.conv.weight.flatten()
    mixed = torch.zeros_like(pooled)
    for channel in range(16):
        for tap in range(5):
            source = channel + tap - 2
            if 0 <= source < 16:  # zero padding at both ends of the channel axis
                mixed[:, channel] += weight[tap] * pooled[:, source]
    torch.testing.assert_close(module(x), x * torch.sigmoid(mixed)[:, :, None, None])


def test_cbam_channel_then_spatial_attention():
    torch.manual_seed(0)
    module = CBAM(32, ratio=8, kernel_size=7)
    assert _num_params(module) == 2 * 32 * 4 + 2 * 49  # bias-free MLP and 7x7 convolution
    x = torch.randn(2, 32, 6, 5)

    def mlp(v):
        return F.conv2d(F.relu(F.conv2d(v, module.channel_fc1.weight)), module.channel_fc2.weight)

    channel = torch.sigmoid(
        mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))
    y = x * channel
    maps = torch.cat([y.mean(1, keepdim=True), y.max(1, keepdim=True).values], 1)
    spatial = torch.sigmoid(F.conv2d(maps, module.spatial_conv.weight, padding=3))
    torch.testing.assert_close(module(x), y * spatial)


def test_shuffle_attention_groups_gates_and_shuffle():
    torch.manual_seed(0)
    groups, channels = 2, 16
    module = ShuffleAttention(channels, groups=groups)
    _randomise(module)
    half = channels // (2 * groups)
    assert _num_params(module) == 6 * half  # cweight, cbias, sweight, sbias, GN weight and bias
    x = torch.randn(2, channels, 5, 4)
    per_group = channels // groups
    gated = []
    for group in range(groups):
        sub = x[:, group * per_group:(group + 1) * per_group]
        x_c, x_s = sub[:, :half], sub[:, half:]
        cweight, cbias = module.cweight.flatten(), module.cbias.flatten()
        channel_gate = torch.sigmoid(cweight[:, None, None] * x_c.mean((2, 3), keepdim=True)
                                     + cbias[:, None, None])
        # GroupNorm with one channel per group: each channel normalised over its H x W.
        mean = x_s.mean((2, 3), keepdim=True)
        var = x_s.var((2, 3), unbiased=False, keepdim=True)
        normed = (x_s - mean) / torch.sqrt(var + module.gn.eps)
        normed = normed * module.gn.weight[:, None, None] + module.gn.bias[:, None, None]
        spatial_gate = torch.sigmoid(module.sweight.flatten()[:, None, None] * normed
                                     + module.sbias.flatten()[:, None, None])
        gated += [x_c * channel_gate, x_s * spatial_gate]
    concatenated = torch.cat(gated, 1)
    # Channel shuffle, 2 groups: output channel 2 i + j is channel j * C/2 + i.
    order = [j * channels // 2 + i for i in range(channels // 2) for j in range(2)]
    torch.testing.assert_close(module(x), concatenated[:, order])


def test_simam_energy_formula():
    torch.manual_seed(0)
    module = SimAM(e_lambda=0.1)
    assert _num_params(module) == 0
    x = torch.randn(2, 3, 4, 5)
    variance = x.var((2, 3), unbiased=True, keepdim=True)  # sum of squares / (H W - 1)
    inverse_energy = (x - x.mean((2, 3), keepdim=True))**2 / (4 * (variance + 0.1)) + 0.5
    torch.testing.assert_close(module(x), x * torch.sigmoid(inverse_energy))


@pytest.mark.parametrize('arch,kernel,per_group,norm_groups',
                         [('T', 5, 1, 32), ('B', 7, 1, 16), ('S', 5, 8, 16), ('L', 7, 8, 16)])
def test_ela_variants_of_the_paper(arch, kernel, per_group, norm_groups):
    channels = 64
    module = EfficientLocalAttention(channels, arch=arch)
    assert module.conv.kernel_size == (kernel, )
    assert module.conv.groups == channels // per_group
    assert module.gn.num_groups == norm_groups
    assert _num_params(module) == channels * per_group * kernel + 2 * channels


def test_ela_shared_convolution_and_norm_along_both_axes():
    torch.manual_seed(0)
    module = EfficientLocalAttention(32, arch='L')
    _randomise(module)
    x = torch.randn(2, 32, 6, 5)

    def attention(pooled):
        conv = F.conv1d(pooled, module.conv.weight, padding=3, groups=4)
        return torch.sigmoid(F.group_norm(conv, 16, module.gn.weight, module.gn.bias))

    a_h = attention(x.mean(3))  # (N, C, H)
    a_w = attention(x.mean(2))  # (N, C, W)
    torch.testing.assert_close(module(x), x * a_h[:, :, :, None] * a_w[:, :, None, :])


@pytest.mark.parametrize('build,message', [
    (lambda: SqueezeExcitation(16, ratio=4, squeeze_channels=4), 'give one of ratio'),
    (lambda: SqueezeExcitation(8, ratio=16), 'leaves no squeeze channel'),
    (lambda: EfficientChannelAttention(16, kernel_size=4), 'kernel_size=4 must be odd'),
    (lambda: CBAM(8, ratio=16), 'leaves no hidden channel'),
    (lambda: CBAM(32, kernel_size=0), 'kernel_size=0 must be a positive integer'),
    (lambda: ShuffleAttention(96, groups=64), 'multiple of 2 \\* groups = 128'),
    (lambda: SimAM(e_lambda=0), 'e_lambda=0 must be a positive number'),
    (lambda: EfficientLocalAttention(64, arch='XL'), "arch='XL' is not an ELA variant"),
    (lambda: EfficientLocalAttention(24, arch='L'), 'in_channels=24 must be a multiple of'),
])
def test_bad_settings_are_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_simam_refuses_a_single_position():
    with pytest.raises(ValueError, match='at least 2 spatial positions.*1x1'):
        SimAM()(torch.randn(1, 4, 1, 1))
