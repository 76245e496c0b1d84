"""KAT checkpoint converters: official timm-layout KAT and ViT/DeiT weights to mmrkan's layout.

The "official" checkpoints here are random timm models of the official layout: timm's
``VisionTransformer`` whose ``mlp_layer`` is a GR-KAN made from mmrkan's ``GroupRational``.
"""
import functools
import importlib.util
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn

from mmrkan.models.backbones import KAT, KATDet
from mmrkan.models.backbones.kat_checkpoint import (convert_timm_kat, convert_timm_vit_to_kat,
                                                    load_timm_state_dict, rational_settings)
from mmrkan.ops import GroupRational
from mmrkan.registry import task_registry
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ARCHS = {'tiny': (192, 3), 'small': (384, 6)}


class TimmLayoutGRKAN(nn.Module):
    """The official KAT mixer as a timm ``mlp_layer``: act1, drop1, fc1, act2, drop2, fc2."""

    def __init__(self, in_features: int, hidden_features: int, bias: bool = True,
                 drop: float = 0., groups=(8, 8), order=(5, 4), per_group_numerator=False,
                 **kwargs) -> None:
        super().__init__()
        self.act1 = GroupRational(groups[0], 'identity', order, per_group_numerator)
        self.drop1 = nn.Dropout(drop)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act2 = GroupRational(groups[1], 'swish', order, per_group_numerator)
        self.drop2 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop2(self.act2(self.fc1(self.drop1(self.act1(x))))))


def timm_model(arch: str, kan: bool, num_classes: int = 1000, depth: int = 12,
               **rationals) -> nn.Module:
    """A random timm-layout KAT (``kan=True``) or DeiT of ``arch``, every parameter perturbed;
    ``rationals``: the mixer's ``groups`` (of act1, act2), ``order``, ``per_group_numerator``."""
    torch.manual_seed(0)
    dims, heads = ARCHS[arch]
    mlp = dict(mlp_layer=functools.partial(TimmLayoutGRKAN, **rationals)) if kan else {}
    model = TimmViT(embed_dim=dims, depth=depth, num_heads=heads, num_classes=num_classes,
                    **mlp).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def mmpretrain_classifier(arch: str, act_init: str = 'swish', depth: int = 12,
                          **backbone) -> nn.Module:
    init_default_scope('mmpretrain')
    dims, heads = ARCHS[arch]
    return task_registry('mmpretrain').build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='KAT', act_init=act_init, **backbone,
                          arch=dict(embed_dims=dims, num_layers=depth, num_heads=heads,
                                    feedforward_channels=4 * dims)),
            head=dict(type='VisionTransformerClsHead', num_classes=1000,
                      in_channels=ARCHS[arch][0]))).eval()


def test_converted_official_weights_give_the_same_logits():
    official = timm_model('tiny', kan=True)
    ours = mmpretrain_classifier('tiny')
    ours.load_state_dict(convert_timm_kat(official.state_dict()))  # strict
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = official(x)
        logits = ours(x, mode='tensor')
    assert expected.abs().mean() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_key_names():
    converted = convert_timm_kat(timm_model('tiny', kan=True, depth=1).state_dict())
    assert converted['backbone.layers.0.kan.rational1.weight_denominator'].shape == (8, 4)
    assert converted['backbone.layers.0.kan.rational2.weight_numerator'].shape == (1, 6)
    assert converted['backbone.patch_embed.projection.weight'].shape == (192, 3, 16, 16)
    assert 'backbone.ln1.weight' in converted and 'head.layers.head.bias' in converted


def _backbone_from_config(config: str) -> nn.Module:
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    return task_registry(cfg.default_scope).build(cfg.model.backbone)


@pytest.mark.parametrize('task, config, backbone_type', [
    ('segmentation', 'configs/kat/upernet_kat-small_8xb2-160k_ade20k-512x512.py', KAT),
    ('detection', 'configs/katdet/mask-rcnn_katdet-small_simplefpn_3x_coco.py', KATDet),
])
def test_backbone_conversions_load_into_the_configs_backbones(task, config, backbone_type):
    official = timm_model('small', kan=True).state_dict()
    converted = convert_timm_kat(official, task=task)
    backbone = _backbone_from_config(config)
    assert type(backbone) is backbone_type
    backbone.load_state_dict(converted)  # strict; the position embedding is resized
    torch.testing.assert_close(backbone.layers[11].kan.rational2.weight_denominator,
                               official['blocks.11.mlp.act2.weight_denominator'])
    assert not any(k.startswith(('backbone.', 'head', 'ln1')) for k in converted)


def _load_tool(name: str):
    path = osp.join(REPO, 'tools', 'model_converters', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_output_loads_through_the_configs_pretrained_init(tmp_path, monkeypatch):
    official = timm_model('small', kan=True).state_dict()
    src, dst = str(tmp_path / 'kat_small.pth'), str(tmp_path / 'out' / 'kat-small-det.pth')
    torch.save({'model': official}, src)
    monkeypatch.setattr(sys, 'argv', ['kat_timm2mmrkan.py', src, dst, '--task', 'detection'])
    _load_tool('kat_timm2mmrkan').main()
    backbone = _backbone_from_config('configs/katdet/mask-rcnn_katdet-small_simplefpn_3x_coco.py')
    backbone.init_cfg = dict(type='Pretrained', checkpoint=dst)
    backbone.init_weights()
    torch.testing.assert_close(backbone.layers[3].attn.qkv.weight, official['blocks.3.attn.qkv.weight'])


def test_load_timm_state_dict_reads_the_official_file_formats(tmp_path):
    state = {'w': torch.randn(2, 2)}
    torch.save({'model': state}, tmp_path / 'a.pth')
    torch.save(state, tmp_path / 'b.bin')
    save_file(state, str(tmp_path / 'c.safetensors'))
    for name in ('a.pth', 'b.bin', 'c.safetensors'):
        torch.testing.assert_close(load_timm_state_dict(str(tmp_path / name))['w'], state['w'])


def test_deit_weights_initialise_a_kat_that_computes_the_deit():
    deit = timm_model('tiny', kan=False)
    kat = mmpretrain_classifier('tiny', act_init='gelu')
    converted = convert_timm_vit_to_kat(deit.state_dict())
    kat.load_state_dict(converted)  # strict
    gelu = GroupRational(8, init='gelu')
    torch.testing.assert_close(converted['backbone.layers.4.kan.rational2.weight_denominator'],
                               gelu.weight_denominator.detach())
    torch.testing.assert_close(converted['backbone.layers.4.kan.rational1.weight_numerator'],
                               torch.tensor([[0., 1., 0., 0., 0., 0.]]))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, logits = deit(x), kat(x, mode='tensor')
    # Equal up to the rational's fit of GELU.
    assert (logits - expected).abs().max() < 0.02 * expected.abs().max()
    assert logits.argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_vit_cli_writes_a_kat_star_checkpoint(tmp_path, monkeypatch):
    src, dst = str(tmp_path / 'deit.pth'), str(tmp_path / 'kat-star.pth')
    torch.save({'model': timm_model('tiny', kan=False, depth=2).state_dict()}, src)
    monkeypatch.setattr(sys, 'argv', ['vit2kat.py', src, dst, '--task', 'segmentation'])
    _load_tool('vit2kat').main()
    checkpoint = torch.load(dst, weights_only=True)
    assert checkpoint['meta']['act_init'] == 'gelu'
    assert 'layers.1.kan.rational2.weight_numerator' in checkpoint['state_dict']


def test_wrong_checkpoints_are_clear_errors():
    kat = timm_model('tiny', kan=True, depth=2).state_dict()
    deit = timm_model('tiny', kan=False, depth=2).state_dict()
    with pytest.raises(ValueError, match=r'not a timm-layout KAT .*convert_timm_vit_to_kat.*'
                       r'missing keys \[.blocks.0.mlp.act1'):
        convert_timm_kat(deit)
    with pytest.raises(ValueError, match=r'not a timm-layout ViT/DeiT .*unexpected keys '
                       r'\[.blocks.0.mlp.act1'):
        convert_timm_vit_to_kat(kat)
    distilled = dict(deit, dist_token=torch.zeros(1, 1, 192))
    with pytest.raises(ValueError, match=r"unexpected keys \['dist_token'\]"):
        convert_timm_vit_to_kat(distilled)
    with pytest.raises(ValueError, match='0 blocks found'):
        convert_timm_kat(convert_timm_kat(kat))  # already converted
    headless = {k: v for k, v in kat.items() if not k.startswith('head.')}
    with pytest.raises(ValueError, match=r"missing keys \['head.bias', 'head.weight'\]"):
        convert_timm_kat(headless, task='classification')
    assert 'layers.0.ln1.weight' in convert_timm_kat(headless, task='detection')
    with pytest.raises(ValueError, match="task='det' is not supported"):
        convert_timm_kat(kat, task='det')


def test_the_converters_classification_output_in_a_segmentation_config_names_the_task(
        tmp_path, monkeypatch, capsys, shapes_ade20k):
    # The converter's default (--task classification) fed to UperNet: a 40-line "196 missing keys"
    # traceback at the Runner's initialisation; now one line before it, naming the --task to use.
    src, dst = str(tmp_path / 'kat_tiny_patch16_224.pth'), str(tmp_path / 'kat-tiny_in1k.pth')
    torch.save(timm_model('tiny', kan=True).state_dict(), src)
    monkeypatch.setattr(sys, 'argv', ['kat_timm2mmrkan.py', src, dst])
    _load_tool('kat_timm2mmrkan').main()
    status, _, err = run_script(capsys, osp.join(REPO, 'tools', 'train.py'),
                                osp.join(REPO, 'configs', 'kat', 'upernet_kat-tiny_8xb2-160k_ade20k-512x512.py'),
                                '--work-dir', tmp_path / 'work', '--data-root', shapes_ade20k,
                                '--cfg-options', f'model.backbone.init_cfg.checkpoint={dst}')
    assert status == 2, err[-3000:]
    error = err.strip().splitlines()[-1]
    assert error.startswith(f"error: model.backbone.init_cfg.checkpoint='{dst}' does not fit model.backbone (KAT): "
                            'the checkpoint does not fit this KAT (192 channels, 12 blocks)'), error
    assert error.endswith('. It was converted with --task classification; this mmseg config needs --task '
                          'segmentation: python tools/model_converters/kat_timm2mmrkan.py kat_tiny_patch16_224.pth '
                          f'{dst} --task segmentation'), error


@pytest.mark.parametrize('rationals, settings', [
    (dict(), dict(num_groups=8, rational_order=(5, 4), per_group_numerator=False)),
    # The authors' KAT_1DGroup: one numerator per group.
    (dict(groups=(4, 4), order=(3, 2), per_group_numerator=True),
     dict(num_groups=4, rational_order=(3, 2), per_group_numerator=True)),
    (dict(groups=(192, 768), order=(7, 6), per_group_numerator=True),
     dict(num_groups='per_channel', rational_order=(7, 6), per_group_numerator=True)),
], ids=['released', 'per-group-order3-2', 'per-channel-order7-6'])
def test_kats_of_other_rational_settings_convert_with_the_settings_they_need(rationals, settings):
    official = timm_model('tiny', kan=True, depth=2, **rationals)
    state_dict = official.state_dict()
    assert rational_settings(state_dict) == settings
    ours = mmpretrain_classifier('tiny', depth=2, **settings)
    ours.load_state_dict(convert_timm_kat(state_dict))  # strict: every shape fits
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mode='tensor'), official(x), rtol=1e-5, atol=1e-5)


def test_rationals_of_no_single_kat_setting_are_clear_errors():
    mixed = timm_model('tiny', kan=True, depth=2).state_dict()
    mixed['blocks.1.mlp.act1.weight_denominator'] = torch.zeros(4, 4)
    with pytest.raises(ValueError, match='differ between blocks'):
        convert_timm_kat(mixed)
    two_counts = timm_model('tiny', kan=True, depth=1, groups=(8, 4)).state_dict()
    with pytest.raises(ValueError, match='8 and 4 groups'):
        convert_timm_kat(two_counts)
    bad_order = timm_model('tiny', kan=True, depth=1).state_dict()
    bad_order['blocks.0.mlp.act2.weight_numerator'] = torch.zeros(1, 5)
    with pytest.raises(ValueError, match=r'blocks.0.mlp.act2: numerator \(1, 5\) and denominator '
                       r'\(8, 4\) are not the coefficients of a group-rational on 768 channels'):
        convert_timm_kat(bad_order)


def test_vit_cli_writes_kat_star_checkpoints_of_other_rational_settings(tmp_path, monkeypatch):
    src, dst = str(tmp_path / 'deit.pth'), str(tmp_path / 'kat-star.pth')
    torch.save({'model': timm_model('tiny', kan=False, depth=2).state_dict()}, src)
    monkeypatch.setattr(sys, 'argv', ['vit2kat.py', src, dst, '--num-groups', 'per_channel',
                                      '--order', '7', '6', '--per-group-numerator'])
    _load_tool('vit2kat').main()
    checkpoint = torch.load(dst, weights_only=True)
    assert {key: checkpoint['meta'][key] for key in
            ('num_groups', 'rational_order', 'per_group_numerator')} == dict(
                num_groups='per_channel', rational_order=(7, 6), per_group_numerator=True)
    kat = mmpretrain_classifier('tiny', act_init='gelu', depth=2, num_groups='per_channel',
                                rational_order=(7, 6), per_group_numerator=True)
    kat.load_state_dict(checkpoint['state_dict'])  # strict
    rational2 = checkpoint['state_dict']['backbone.layers.1.kan.rational2.weight_numerator']
    assert rational2.shape == (768, 8)
    torch.testing.assert_close(rational2, GroupRational(1, 'gelu', (7, 6)).weight_numerator.detach()
                               .expand(768, -1))


def test_kat_cli_stores_the_settings_the_checkpoint_needs(tmp_path, monkeypatch, capsys):
    src, dst = str(tmp_path / 'kat.pth'), str(tmp_path / 'kat-mm.pth')
    torch.save(timm_model('tiny', kan=True, depth=1, groups=(4, 4), per_group_numerator=True)
               .state_dict(), src)
    monkeypatch.setattr(sys, 'argv', ['kat_timm2mmrkan.py', src, dst])
    _load_tool('kat_timm2mmrkan').main()
    assert torch.load(dst, weights_only=True)['meta']['backbone_settings'] == dict(
        num_groups=4, rational_order=(5, 4), per_group_numerator=True)
    assert ('num_groups=4, rational_order=(5, 4), per_group_numerator=True'
            in capsys.readouterr().out)


@pytest.mark.parametrize('setting, value, message', [
    ('rational_order', (4, 4), r"rational_order=\(4, 4\) is not supported; allowed: \(3, 2\)"),
    ('num_groups', 5, r'embed_dims=192 must be divisible by num_groups=5'),
    ('num_groups', 'grouped', r"num_groups='grouped' is not supported; allowed: a positive int"),
    ('act_init', 'tanh', r"act_init='tanh' is not supported; allowed: \('identity'"),
])
def test_unsupported_kat_star_settings_are_clear_errors(setting, value, message):
    deit = timm_model('tiny', kan=False, depth=1).state_dict()
    with pytest.raises(ValueError, match=f'convert_timm_vit_to_kat: {message}'):
        convert_timm_vit_to_kat(deit, **{setting: value})


@pytest.mark.parametrize('args, message', [
    (['--order', '4', '4'], 'error: --order 4 4 is not supported; allowed: 3 2, 5 4, 7 6'),
    (['--num-groups', 'ungrouped'], "error: argument --num-groups: 'ungrouped' is not supported; "
     "allowed: a positive int or 'per_channel'"),
])
def test_vit_cli_refuses_unsupported_settings_before_reading(tmp_path, monkeypatch, capsys, args,
                                                             message):
    dst = tmp_path / 'kat-star.pth'
    monkeypatch.setattr(sys, 'argv', ['vit2kat.py', str(tmp_path / 'missing.pth'), str(dst), *args])
    with pytest.raises(SystemExit) as exit_info:
        _load_tool('vit2kat').main()
    assert exit_info.value.code == 2 and not dst.exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
