"""KAT keeps the contract of the ViTs it replaces: mmpretrain's and mmseg's VisionTransformer.

Each test runs one documented behaviour of a parent on the parent and on KAT, both built with the
same arguments, and asserts the same outcome. Where KAT differs on purpose (README, "KAT and RKAN
as drop-in backbones") the test says so and checks KAT's side.
"""
import copy
import inspect
from typing import Any, Dict, Tuple

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.model import BaseModule
from mmpretrain.models.backbones import VisionTransformer as PretrainViT
from mmseg.models.backbones import VisionTransformer as SegViT
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn

from mmrkan.models.backbones import KAT
from mmrkan.models.backbones.pretrained import PRETRAINED_DEPRECATION

PARENTS = {'mmpretrain': PretrainViT, 'mmseg': SegViT}
# 3 blocks of 32 channels, 8x8 patches of 32x32 images, in each parent's own terms.
BASE_ARGS = {
    'mmpretrain': dict(arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                                 feedforward_channels=128), img_size=32, patch_size=8),
    'mmseg': dict(embed_dims=32, num_layers=3, num_heads=2, mlp_ratio=4, img_size=32,
                  patch_size=8),
}
# Inputs that are not multiples of the patch: the position embedding is resized at each forward.
INPUT_HW = (36, 52)


def build(cls: type, parent: str, **kwargs) -> nn.Module:
    return cls(**copy.deepcopy(dict(BASE_ARGS[parent], **kwargs)))


def build_pair(parent: str, **kwargs) -> Tuple[nn.Module, KAT]:
    return build(PARENTS[parent], parent, **kwargs), build(KAT, parent, **kwargs)


def _structure(outputs: Any) -> Any:
    """Types and shapes of a backbone output, nested as returned."""
    if isinstance(outputs, torch.Tensor):
        return tuple(outputs.shape)
    return type(outputs).__name__, [_structure(item) for item in outputs]


def _unit(name: str) -> str:
    """The part of the ViT a parameter or module belongs to, in names both models share: the
    attention and the MLP / GR-KAN mixer of a block are named differently inside."""
    name = name.replace('ln_pre', 'pre_norm')  # mmseg's name of mmpretrain's pre_norm
    parts = name.split('.')
    if parts[0] != 'layers' or len(parts) < 3:
        return name
    if parts[2] in ('ln1', 'ln2'):
        return name
    if parts[2] == 'gamma2' or parts[2:4] == ['ffn', 'gamma2']:
        return f'layers.{parts[1]}.mixer_layer_scale'
    if parts[2] == 'attn' and parts[3] == 'gamma1':
        return f'layers.{parts[1]}.attn_layer_scale'
    return f'layers.{parts[1]}.{"attn" if parts[2] == "attn" else "mixer"}'


def _grouped(items) -> Dict[str, Any]:
    groups: Dict[str, list] = {}
    for name, value in items:
        groups.setdefault(_unit(name), []).append(value)
    return {unit: values[0] if len(set(values)) == 1 else 'mixed'
            for unit, values in groups.items()}


def outcome(model: nn.Module, in_channels: int = 3) -> dict:
    """What a user of the backbone sees: which parts are in training mode as built, its outputs,
    its parameters (shapes outside the blocks, trainable or frozen), its norms, and their
    weights after ``init_weights``."""
    training = _grouped((name, m.training) for name, m in model.named_modules()
                        if name and list(m.parameters(recurse=False)))
    model.eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, in_channels, *INPUT_HW))
    model.train()
    trainable = _grouped((name, p.requires_grad) for name, p in model.named_parameters())
    shapes = {name.replace('ln_pre', 'pre_norm'): tuple(p.shape)
              for name, p in model.named_parameters() if not name.startswith('layers.')}
    norms = sorted({(type(m).__name__, m.eps) for m in model.modules()
                    if isinstance(m, nn.LayerNorm)})
    model.init_weights()
    norm_weights = sorted({round(float(v), 4) for m in model.modules()
                           if isinstance(m, nn.LayerNorm) for v in m.weight.unique()})
    return dict(outputs=_structure(outputs), trainable=trainable, shapes=shapes,
                training=training, norms=norms, norm_weights=norm_weights)


def same_outcome(parent: str, **kwargs) -> Tuple[dict, dict]:
    try:
        parent_model = build(PARENTS[parent], parent, **kwargs)
    except Exception as error:  # the parent refuses: KAT must refuse alike
        with pytest.raises(type(error)):
            build(KAT, parent, **kwargs)
        return {}, {}
    in_channels = kwargs.get('in_channels', 3)
    return outcome(parent_model, in_channels), outcome(build(KAT, parent, **kwargs), in_channels)


# A non-default value of every constructor argument of each parent.
ARGUMENT_VALUES = {
    'mmpretrain': {
        'arch': [dict(arch='deit-tiny')],
        'img_size': [dict(img_size=(32, 48))],
        'patch_size': [dict(patch_size=4)],
        'in_channels': [dict(in_channels=1)],
        'out_indices': [dict(out_indices=(0, 2)), dict(out_indices=1)],
        'drop_rate': [dict(drop_rate=0.1)],
        'drop_path_rate': [dict(drop_path_rate=0.1)],
        'qkv_bias': [dict(qkv_bias=False)],
        'norm_cfg': [dict(norm_cfg=dict(type='LN', eps=1e-5))],
        'final_norm': [dict(final_norm=False)],
        'out_type': [dict(out_type='featmap'), dict(out_type='avg_featmap'),
                     dict(out_type='raw')],
        'with_cls_token': [dict(with_cls_token=False, out_type='featmap'),
                           dict(with_cls_token=False, out_type='raw')],
        'frozen_stages': [dict(frozen_stages=1), dict(frozen_stages=3)],
        'interpolate_mode': [dict(interpolate_mode='bilinear')],
        'layer_scale_init_value': [dict(layer_scale_init_value=0.1)],
        'patch_cfg': [dict(patch_cfg=dict(stride=4, padding=2))],
        'layer_cfgs': [dict(layer_cfgs=[dict(), dict(qkv_bias=False), dict()]),
                       dict(layer_cfgs=dict(layer_scale_init_value=0.1))],
        'pre_norm': [dict(pre_norm=True)],
        'init_cfg': [dict(init_cfg=dict(type='Constant', val=0.5, layer='LayerNorm'))],
    },
    'mmseg': {
        'img_size': [dict(img_size=(32, 48)), dict(img_size=(32, ))],
        'patch_size': [dict(patch_size=4)],
        'patch_pad': [dict(patch_pad=0)],
        'in_channels': [dict(in_channels=1)],
        'embed_dims': [dict(embed_dims=64)],
        'num_layers': [dict(num_layers=2)],
        'num_heads': [dict(num_heads=4)],
        'mlp_ratio': [dict(mlp_ratio=2)],
        'out_origin': [dict(out_origin=True), dict(out_origin=True, output_cls_token=True)],
        'out_indices': [dict(out_indices=(0, 2)), dict(out_indices=[1]), dict(out_indices=1)],
        'qkv_bias': [dict(qkv_bias=False)],
        'drop_rate': [dict(drop_rate=0.1)],
        'attn_drop_rate': [dict(attn_drop_rate=0.1)],
        'drop_path_rate': [dict(drop_path_rate=0.1)],
        'with_cls_token': [dict(with_cls_token=False)],
        'output_cls_token': [dict(output_cls_token=True)],
        'norm_cfg': [dict(norm_cfg=dict(type='LN', eps=1e-6))],
        'act_cfg': [dict(act_cfg=dict(type='GELU')), dict(act_cfg=dict(type='SiLU'))],
        'patch_norm': [dict(patch_norm=True)],
        'patch_bias': [dict(patch_bias=True)],
        'pre_norm': [dict(pre_norm=True)],
        'final_norm': [dict(final_norm=True)],
        'interpolate_mode': [dict(interpolate_mode='bilinear')],
        'num_fcs': [dict(num_fcs=2)],  # KAT has no other (test_deliberate_differences)
        'norm_eval': [dict(norm_eval=True)],
        'with_cp': [dict(with_cp=True)],
        'frozen_exclude': [dict(frozen_exclude=['pos_embed']),
                           dict(frozen_exclude=['ln1', 'patch_embed'])],
        'pretrained': [],  # a checkpoint file: test_pretrained_is_converted_to_init_cfg
        'init_cfg': [dict(init_cfg=dict(type='Constant', val=0.5, layer='LayerNorm'))],
    },
}
ARGUMENT_CASES = [(parent, kwargs) for parent, table in ARGUMENT_VALUES.items()
                  for values in table.values() for kwargs in values]


@pytest.mark.parametrize('parent', PARENTS)
def test_every_constructor_argument_of_the_parent_is_accepted(parent):
    parent_args = set(inspect.signature(PARENTS[parent]).parameters)
    assert parent_args <= set(inspect.signature(KAT).parameters)
    assert set(ARGUMENT_VALUES[parent]) == parent_args, 'a parent argument is not tested'


@pytest.mark.parametrize('parent, kwargs', ARGUMENT_CASES,
                         ids=[f'{p}-{kw}' for p, kw in ARGUMENT_CASES])
def test_argument_has_the_parents_meaning(parent, kwargs):
    parent_outcome, kat_outcome = same_outcome(parent, **kwargs)
    if parent == 'mmseg' and kwargs.get('with_cls_token') is False:
        # On purpose: without a class token KAT has none, as mmpretrain's ViT (mmseg keeps an
        # unused one, and its row in the position embedding).
        del parent_outcome['shapes']['cls_token'], parent_outcome['trainable']['cls_token']
        num_tokens = parent_outcome['shapes']['pos_embed'][1]
        parent_outcome['shapes']['pos_embed'] = (1, num_tokens - 1, 32)
    assert kat_outcome == parent_outcome


@pytest.mark.parametrize('parent', PARENTS)
@pytest.mark.parametrize('out_indices', [-1, [-1], (0, -1), [-2, -3]])
def test_negative_out_indices_count_from_the_last_block(parent, out_indices):
    kat = build(KAT, parent, out_indices=out_indices, out_type='featmap')
    outputs = kat(torch.randn(1, 3, 32, 32))
    # mmpretrain writes the normalised indices into the list it is given (a tuple with a negative
    # index is a TypeError there); KAT takes tuples too.
    pretrain_vit = build(PretrainViT, 'mmpretrain', out_type='featmap', out_indices=(
        out_indices if isinstance(out_indices, int) else list(out_indices)))
    assert _structure(outputs) == _structure(pretrain_vit(torch.randn(1, 3, 32, 32)))
    assert kat.out_indices == [index % 3 for index in ([out_indices] if isinstance(
        out_indices, int) else out_indices)]
    if parent == 'mmseg':
        seg_vit = build(SegViT, 'mmseg', out_indices=out_indices)
        seg_outputs = seg_vit(torch.randn(1, 3, 32, 32))
        if isinstance(out_indices, int):
            assert _structure(seg_outputs) == _structure(outputs)
        else:
            # On purpose: mmseg's ViT silently returns nothing for negative indices in a list.
            assert len(seg_outputs) == sum(index >= 0 for index in out_indices)


def test_norm_eval_keeps_the_layer_norms_in_eval_mode():
    seg_vit, kat = build_pair('mmseg', norm_eval=True)
    for model in (seg_vit, kat):
        model.train()
        norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
        assert norms and not any(norm.training for norm in norms)
        assert model.layers[0].training


def test_with_cp_recomputes_every_block_with_the_same_gradients(monkeypatch):
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(function)
        return checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting_checkpoint)
    x = torch.randn(2, 3, 32, 32)
    for cls in (SegViT, KAT):
        torch.manual_seed(0)
        plain = build(cls, 'mmseg', drop_path_rate=0.)
        recomputed = build(cls, 'mmseg', with_cp=True)
        recomputed.load_state_dict(plain.state_dict())
        grads = []
        for model in (plain, recomputed):
            calls.clear()
            model(x)[0].square().sum().backward()
            grads.append([p.grad for p in model.parameters()])
        assert len(calls) == 3, cls  # one per block, in the forward of the with_cp model
        for plain_grad, recomputed_grad in zip(*grads):
            torch.testing.assert_close(plain_grad, recomputed_grad)


@pytest.mark.parametrize('parent', PARENTS)
def test_pretrained_position_embedding_is_resized_as_the_parents(parent, tmp_path):
    """A checkpoint made at 32x32 (4x4 grid) initialises a 64x64 model (8x8 grid): both resize
    the same stored grid to the same values."""
    torch.manual_seed(0)
    stored = torch.randn(1, 17, 32)
    loaded = []
    for cls in PARENTS[parent], KAT:
        source = build(cls, parent).state_dict()
        source['pos_embed'] = stored
        path = str(tmp_path / f'{cls.__module__}.pth')
        torch.save(dict(state_dict=source), path)
        model = build(cls, parent, img_size=64, init_cfg=dict(type='Pretrained', checkpoint=path))
        model.init_weights()
        assert model.pos_embed.shape == (1, 65, 32)
        loaded.append(model.pos_embed.detach())
    torch.testing.assert_close(loaded[1], loaded[0])
    assert not torch.equal(loaded[0][:, 1:17], stored[:, 1:])  # really resized


# Partial checkpoints (issue 18, failure 2): a checkpoint of the same network without the parts
# an option adds initialises the rest, with a warning naming the missing keys.
PARTIAL_CASES = [
    # mmpretrain's fine-tuning set-ups: a classifier checkpoint for an avg_featmap backbone.
    ('mmpretrain', dict(), dict(out_type='avg_featmap'), ['ln2.bias', 'ln2.weight']),
    # A segmentation checkpoint (no final norm) for a model with final_norm=True.
    ('mmpretrain', dict(final_norm=False), dict(), ['ln1.bias', 'ln1.weight']),
    ('mmseg', dict(), dict(final_norm=True), ['ln1.bias', 'ln1.weight']),
    # A model with layer scales (and a pre-norm) from a checkpoint without them.
    ('mmpretrain', dict(), dict(layer_scale_init_value=0.1), 6),
    ('mmseg', dict(), dict(pre_norm=True), 2),
]


@pytest.mark.parametrize('parent, saved, loaded, missing', PARTIAL_CASES)
def test_partial_pretrained_checkpoint_warns_and_loads_the_rest(parent, saved, loaded, missing,
                                                                tmp_path, missing_keys_reported):
    reports = missing_keys_reported
    results = []
    for cls in PARENTS[parent], KAT:
        state_dict = build(cls, parent, **saved).state_dict()
        path = str(tmp_path / 'partial.pth')
        torch.save(dict(state_dict=state_dict), path)
        model = build(cls, parent, init_cfg=dict(type='Pretrained', checkpoint=path), **loaded)
        reports.clear()
        model.init_weights()
        for name, value in model.state_dict().items():
            if name in state_dict:
                torch.testing.assert_close(value, state_dict[name], msg=name)
        results.append(sorted(reports))
    parent_missing, kat_missing = results
    if isinstance(missing, int):  # parameters named differently inside the blocks
        assert len(parent_missing) == len(kat_missing) == missing, results
    else:
        assert parent_missing == kat_missing == missing


@pytest.mark.parametrize('kwargs', [dict(), dict(pre_norm=True, final_norm=False),
                                    dict(layer_scale_init_value=0.1, out_type='avg_featmap')])
def test_layer_depths_for_layer_wise_lr_decay_are_the_parents(kwargs):
    vit, kat = build_pair('mmpretrain', **kwargs)
    parent_depths = {_unit(name): vit.get_layer_depth('backbone.' + name, 'backbone.')
                     for name, _ in vit.named_parameters()}
    kat_depths = {_unit(name): kat.get_layer_depth('backbone.' + name, 'backbone.')
                  for name, _ in kat.named_parameters()}
    assert kat_depths == parent_depths
    assert kat.get_layer_depth('head.fc.weight', 'backbone.') == (4, 5)


@pytest.mark.parametrize('cls', [PretrainViT, KAT])
def test_pre_norm_and_layer_scale_keep_their_meaning(cls):
    """Issue 18, failure 4: with layer scales near zero every block is nearly the identity, so
    the tokens leave the network as the pre-norm made them: normalised."""
    model = build(cls, 'mmpretrain', pre_norm=True, layer_scale_init_value=1e-9,
                  final_norm=False, out_type='raw')
    with torch.no_grad():
        (tokens, ) = model(torch.randn(2, 3, 32, 32))
    patch_tokens = tokens[:, 1:]  # the class token is all zeros before init_weights
    torch.testing.assert_close(patch_tokens.mean(-1), torch.zeros(2, 16), atol=1e-4, rtol=0)
    torch.testing.assert_close(patch_tokens.std(-1, unbiased=False), torch.ones(2, 16),
                               atol=1e-3, rtol=0)
    scales = [p for name, p in model.named_parameters() if 'gamma' in name]
    assert len(scales) == 6 and all(torch.all(p == 1e-9) for p in scales)
    assert model.patch_embed.projection.bias is None  # no patch bias with a pre-norm (CLIP)


# (parent, arguments, the parent's error, KAT's error, the setting KAT's message names). KAT
# raises ValueError/TypeError where the parents assert (on purpose: assertions vanish under
# python -O and name no setting).
ERROR_CASES = [
    ('mmpretrain', dict(arch='gigantic'), AssertionError, ValueError, 'arch'),
    ('mmpretrain', dict(arch=dict(embed_dims=32, num_layers=3)), AssertionError, ValueError,
     'arch'),
    ('mmpretrain', dict(out_type='tokens'), ValueError, ValueError, 'out_type'),
    ('mmpretrain', dict(with_cls_token=False), ValueError, ValueError, 'with_cls_token'),
    ('mmpretrain', dict(out_indices=(0, 4)), AssertionError, ValueError, 'out_indices'),
    ('mmpretrain', dict(out_indices=-4), AssertionError, ValueError, 'out_indices'),
    ('mmpretrain', dict(layer_cfgs=dict(ffn_type='glu')), NotImplementedError, ValueError,
     'ffn_type'),
    ('mmseg', dict(img_size=(32, 32, 32)), AssertionError, ValueError, 'img_size'),
    ('mmseg', dict(output_cls_token=True, with_cls_token=False), AssertionError, ValueError,
     'output_cls_token'),
    ('mmseg', dict(out_indices=1.0), TypeError, TypeError, 'out_indices'),
    ('mmseg', dict(pretrained=1), TypeError, TypeError, 'pretrained'),
    ('mmseg', dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     AssertionError, ValueError, 'pretrained'),
]


@pytest.mark.parametrize('parent, kwargs, parent_error, kat_error, setting', ERROR_CASES)
def test_bad_arguments_are_refused_as_by_the_parent(parent, kwargs, parent_error, kat_error,
                                                    setting):
    with pytest.raises(parent_error):
        build(PARENTS[parent], parent, **kwargs)
    with pytest.raises(kat_error, match=setting):
        build(KAT, parent, **kwargs)


def test_deliberate_differences():
    """The README's list: what KAT does not take from the parents, and says so."""
    # GR-KAN has two linear layers: mmseg's num_fcs=3 MLP has no GR-KAN form.
    build(SegViT, 'mmseg', num_fcs=3)
    with pytest.raises(ValueError, match='num_fcs=3'):
        build(KAT, 'mmseg', num_fcs=3)
    # Activations the rationals cannot start as.
    build(SegViT, 'mmseg', act_cfg=dict(type='ReLU'))
    with pytest.raises(ValueError, match="act_cfg=.*'ReLU'"):
        build(KAT, 'mmseg', act_cfg=dict(type='ReLU'))
    # KAT's 'small' is the paper's KAT-S (DeiT-S sizes), not mmpretrain's 8-block ViT-small.
    assert KAT.get_arch_settings('small')['num_layers'] == 12
    assert PretrainViT.arch_zoo['small']['num_layers'] == 8
    assert KAT.get_arch_settings('deit-small') == PretrainViT.arch_zoo['deit-small']


def test_pretrained_is_converted_to_init_cfg_as_mmseg_does(tmp_path):
    path = str(tmp_path / 'kat.pth')
    torch.save(build(KAT, 'mmseg').state_dict(), path)
    models = []
    for cls in SegViT, KAT:
        with pytest.warns(UserWarning) as warnings:
            models.append(build(cls, 'mmseg', pretrained=path))
        assert [str(w.message) for w in warnings] == [PRETRAINED_DEPRECATION]
    assert models[1].init_cfg == models[0].init_cfg == dict(type='Pretrained', checkpoint=path)


def tiny_segmentor(backbone: dict, pretrained: str, in_channels: int) -> ConfigDict:
    """An mmseg segmentor config, as its config files give it (mmseg sets attributes of it)."""
    return ConfigDict(
        type='EncoderDecoder',
        pretrained=pretrained,
        backbone=backbone,
        decode_head=dict(type='FCNHead', in_channels=in_channels, channels=8, num_convs=1,
                         num_classes=3, norm_cfg=dict(type='BN')))


@pytest.mark.parametrize('style', PARENTS)
def test_mmsegs_segmentor_passes_pretrained_to_kat(style, tmp_path):
    """Issue 18, failure 5: mmseg's EncoderDecoder hands its ``pretrained`` to the backbone."""
    source = build(KAT, style, out_type='featmap')
    path = str(tmp_path / 'kat.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    backbone = dict(BASE_ARGS[style], type='KAT', out_type='featmap', out_indices=(2, ))
    with pytest.warns(UserWarning, match='pretrained is deprecated'), \
            DefaultScope.overwrite_default_scope('mmseg'):  # as mmseg's configs are built
        segmentor = SEG_MODELS.build(tiny_segmentor(backbone, path, 32))
    assert isinstance(segmentor.backbone, KAT)
    segmentor.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(segmentor.backbone.state_dict()[name], value, msg=name)


def test_kat_is_a_base_module_with_the_parents_interface():
    kat = build(KAT, 'mmpretrain')
    assert isinstance(kat, PretrainViT) and isinstance(kat, BaseModule)
    assert kat.norm1 is kat.ln1
