"""Conversion of timm-layout KAT and ViT/DeiT state dicts to mmrkan's KAT layout.

The official KAT checkpoints are timm ``VisionTransformer`` state dicts whose MLPs are GR-KANs
(``blocks.i.mlp.act1``, ``fc1``, ``act2``, ``fc2``; ``docs/checkpoints.md``). The converted
state dicts load, with no missing or unexpected key, into:

- ``'classification'``: mmpretrain's ``ImageClassifier`` with a :class:`KAT` backbone and a
  ``VisionTransformerClsHead`` (keys ``backbone.*`` and ``head.layers.head.*``);
- ``'segmentation'``: a :class:`KAT` backbone with ``final_norm=False`` (the UperNet configs),
  keys without prefix, for ``backbone.init_cfg=dict(type='Pretrained', checkpoint=...)``;
- ``'detection'``: a :class:`KATDet` backbone (no class token, no final norm), likewise.

Position embeddings keep the checkpoint's grid; the backbones resize them when loading.
The rationals keep their shapes: :func:`rational_settings` reads from them the ``num_groups``,
``rational_order`` and ``per_group_numerator`` the receiving KAT must be built with (the
released models: 8, (5, 4), shared numerators; the authors' ``KAT_1DGroup`` has per-group
numerators).
"""
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Sequence, Union

import torch

from mmrkan.engine import safe_torch_load
from mmrkan.models.layers.gr_kan import PER_CHANNEL, rational_groups
from mmrkan.ops import GroupRational
from mmrkan.ops.group_rational import DEFAULT_ORDER, RATIONAL_ORDERS, check_init, check_order

TASKS = ('classification', 'segmentation', 'detection')

# timm key -> mmrkan backbone key (block index as \1).
_BACKBONE_KEY_MAP = [
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.mlp\.act1\.', r'layers.\1.kan.rational1.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.kan.fc1.'),
    (r'^blocks\.(\d+)\.mlp\.act2\.', r'layers.\1.kan.rational2.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.kan.fc2.'),
    (r'^norm\.', 'ln1.'),
]
_HEAD_KEYS = ('head.weight', 'head.bias')
_STEM_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias',
              'norm.weight', 'norm.bias')
_VIT_BLOCK_KEYS = ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias',
                   'attn.proj.weight', 'attn.proj.bias', 'norm2.weight', 'norm2.bias',
                   'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
_RATIONAL_KEYS = ('mlp.act1.weight_numerator', 'mlp.act1.weight_denominator',
                  'mlp.act2.weight_numerator', 'mlp.act2.weight_denominator')


def convert_timm_kat(state_dict: Dict[str, torch.Tensor],
                     task: str = 'classification') -> 'OrderedDict[str, torch.Tensor]':
    """Convert an official (timm-layout) KAT state dict to mmrkan's layout for ``task``.

    The rationals keep their shapes (a per-group numerator stays per group); build the
    receiving KAT with the settings :func:`rational_settings` reads from them.

    Raises:
        ValueError: ``task`` is unknown, or ``state_dict`` is not a timm-layout KAT (e.g. a
            ViT/DeiT, a distilled model, or an already converted mmrkan checkpoint), naming the
            keys that are missing or unexpected, or its rationals are not those of one KAT
            setting (:func:`rational_settings`).
    """
    _check_task(task)
    _check_keys(state_dict, 'a timm-layout KAT', with_rationals=True,
                need_head=task == 'classification',
                hint='for a ViT/DeiT checkpoint use convert_timm_vit_to_kat')
    rational_settings(state_dict)
    return _to_mmrkan(state_dict, task)


def rational_settings(state_dict: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """The KAT settings the rationals of a timm-layout KAT state dict were built with.

    Returns:
        ``dict(num_groups=..., rational_order=(m, n), per_group_numerator=...)``, the
        :class:`KAT` arguments that give the same shapes; ``num_groups='per_channel'`` when every
        rational has one group per channel.

    Raises:
        ValueError: the rationals' shapes are not those of one such setting (the blocks differ,
            an unsupported order, numerators of neither ``(1, m + 1)`` nor ``(g, m + 1)``).
    """
    settings = set()
    for i in _block_indices(state_dict):
        block = f'blocks.{i}.mlp.'
        hidden, dims = state_dict[block + 'fc1.weight'].shape
        groups, orders, per_group = [], set(), set()
        for act, channels in (('act1', dims), ('act2', hidden)):
            numerator = tuple(state_dict[f'{block}{act}.weight_numerator'].shape)
            denominator = tuple(state_dict[f'{block}{act}.weight_denominator'].shape)
            if (len(numerator) != 2 or len(denominator) != 2
                    or numerator[0] not in (1, denominator[0])
                    or (numerator[1] - 1, denominator[1]) not in RATIONAL_ORDERS
                    or channels % denominator[0] != 0):
                raise ValueError(
                    f'{block}{act}: numerator {numerator} and denominator {denominator} are not '
                    f'the coefficients of a group-rational on {channels} channels: expected '
                    f'(1 or g, m + 1) and (g, n) with g dividing {channels}, (m, n) one of '
                    f'{", ".join(map(str, RATIONAL_ORDERS))}')
            groups.append(denominator[0])
            orders.add((numerator[1] - 1, denominator[1]))
            per_group.add(numerator[0] != 1)
        if groups[0] == groups[1]:
            num_groups = groups[0]
        elif groups == [dims, hidden]:
            num_groups = PER_CHANNEL
        else:
            num_groups = f'{groups[0]} and {groups[1]}'
        settings.add((num_groups, tuple(orders), tuple(per_group)))
    if len(settings) != 1 or any(len(orders) != 1 or len(per_group) != 1
                                 for _, orders, per_group in settings):
        raise ValueError('the rationals of the checkpoint differ between blocks or between the '
                         'two rationals of a block (groups, orders, per-group numerators): '
                         f'{sorted(settings, key=str)}; a KAT has one setting for all')
    (num_groups, (order, ), (per_group, )), = settings
    if isinstance(num_groups, str) and num_groups != PER_CHANNEL:
        raise ValueError(f'the two rationals of each block have {num_groups} groups: a KAT gives '
                         'both the same num_groups, or one group per channel')
    return dict(num_groups=num_groups, rational_order=order, per_group_numerator=per_group)


def convert_timm_vit_to_kat(state_dict: Dict[str, torch.Tensor],
                            task: str = 'classification',
                            num_groups: Union[int, str] = 8,
                            act_init: str = 'gelu',
                            rational_order: Sequence[int] = DEFAULT_ORDER,
                            per_group_numerator: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """Initialise a KAT from a timm-layout ViT/DeiT state dict (the paper's KAT* models).

    Everything is copied; the MLP linears become the GR-KAN's ``fc1``/``fc2``, each block's first
    rational is the identity and its second ``act_init`` (``'gelu'``, the ViT's activation, by
    default), so the converted model computes the ViT up to the rational's fit of GELU. Build the
    receiving model with the same ``num_groups``, ``act_init``, ``rational_order`` and
    ``per_group_numerator``.

    Raises:
        ValueError: ``task`` is unknown, ``state_dict`` is not a timm-layout ViT/DeiT (e.g.
            a KAT, a distilled DeiT with a distillation token, or an mmpretrain checkpoint), or a
            rational setting is not supported (it names the setting and what is allowed).
    """
    _check_task(task)
    num_blocks = _check_keys(state_dict, 'a timm-layout ViT/DeiT', with_rationals=False,
                             need_head=task == 'classification',
                             hint='for a KAT checkpoint use convert_timm_kat')
    owner = 'convert_timm_vit_to_kat'
    rational_order = check_order(owner, rational_order, 'rational_order')
    check_init(owner, act_init, 'act_init')
    with_rationals = dict(state_dict)
    for i in range(num_blocks):
        hidden, dims = state_dict[f'blocks.{i}.mlp.fc1.weight'].shape
        rationals = {
            'act1': GroupRational(rational_groups(owner, num_groups, dims, 'embed_dims'),
                                  'identity', rational_order, per_group_numerator),
            'act2': GroupRational(rational_groups(owner, num_groups, hidden,
                                                  'feedforward_channels'), act_init,
                                  rational_order, per_group_numerator),
        }
        for act, rational in rationals.items():
            for name, value in rational.state_dict().items():
                with_rationals[f'blocks.{i}.mlp.{act}.{name}'] = value
    return _to_mmrkan(with_rationals, task)


def load_timm_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The state dict of a timm-style checkpoint file: ``.safetensors``, or a torch file holding
    the state dict itself or under ``'model'`` or ``'state_dict'`` (official DeiT/KAT files).

    Torch files are read by :func:`mmrkan.engine.safe_torch_load` (weights only: no code runs).
    """
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file  # optional: comes with timm / huggingface_hub
        return load_file(path)
    checkpoint = safe_torch_load(path, map_location='cpu')
    for key in ('model', 'state_dict'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f'task={task!r} is not supported; allowed: {TASKS}')


def _block_indices(keys: Iterable[str]) -> List[int]:
    return sorted({int(m.group(1)) for m in map(re.compile(r'^blocks\.(\d+)\.').match, keys) if m})


def _check_keys(state_dict: Dict[str, torch.Tensor], expected: str, with_rationals: bool,
                need_head: bool, hint: str) -> int:
    """Check that ``state_dict`` has exactly the keys of ``expected``; returns the depth."""
    num_blocks = len(_block_indices(state_dict))
    block_keys = _VIT_BLOCK_KEYS + (_RATIONAL_KEYS if with_rationals else ())
    required = set(_STEM_KEYS) | {f'blocks.{i}.{k}' for i in range(num_blocks) for k in block_keys}
    if need_head:
        required |= set(_HEAD_KEYS)
    missing = sorted(required - set(state_dict))
    unexpected = sorted(set(state_dict) - required - set(_HEAD_KEYS))
    if num_blocks == 0 or missing or unexpected:
        raise ValueError(f'the checkpoint is not {expected} state dict ({hint}): '
                         f'{num_blocks} blocks found, missing keys {_shorten(missing)}, '
                         f'unexpected keys {_shorten(unexpected)}')
    return num_blocks


def _shorten(keys: List[str], limit: int = 6) -> str:
    return str(keys[:limit] + ([f'... {len(keys) - limit} more'] if len(keys) > limit else []))


def _to_mmrkan(state_dict: Dict[str, torch.Tensor], task: str) -> 'OrderedDict[str, torch.Tensor]':
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key in _HEAD_KEYS:
            if task == 'classification':
                converted['head.layers.' + key] = value
            continue
        new_key = key
        for pattern, replacement in _BACKBONE_KEY_MAP:
            new_key = re.sub(pattern, replacement, new_key)
        # The dense-prediction backbones have no final norm; KATDet has no class token (its
        # position embedding's class row is dropped when loading).
        if task != 'classification' and new_key.startswith('ln1.'):
            continue
        if task == 'detection' and new_key == 'cls_token':
            continue
        converted[('backbone.' if task == 'classification' else '') + new_key] = value
    return converted
