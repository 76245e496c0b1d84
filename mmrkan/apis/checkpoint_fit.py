"""Does a checkpoint fit the model? Checked before the Runner loads it.

mmengine loads ``load_from``, ``--resume`` and ``tools/test.py CKPT`` checkpoints with
``strict=False``: missing keys, unexpected keys and shape mismatches are logged as warnings and
the model keeps its random weights for them, so a wrong checkpoint evaluates to mAP 0 or
fine-tunes from noise without an error. The tools instead load the checkpoint into the meta
model of :func:`build_model_for_checks` (a no-op copy that runs each module's own loading code,
e.g. position-embedding resizing) and refuse it when anything does not fit.

Keys that are legitimately absent (e.g. a classifier's head when fine-tuning on other classes)
are stated by the config, as regular expressions matched at the start of the key::

    checkpoint_fit = dict(ignore_keys=[r'roi_head\\.bbox_head\\.fc_(cls|reg)\\.'])

A model key matching one of them may be missing from the checkpoint or have another shape
there (it keeps its initialisation); a checkpoint key matching one may be unused.
"""
import re
import warnings
from typing import Dict, List, Sequence, Tuple

import torch
from mmengine.config import Config
from torch import nn

from mmrkan.engine import safe_torch_load
from .errors import ToolError

FIT_SETTING = 'checkpoint_fit'
# What mmengine's Runner.load_checkpoint strips from checkpoint keys (DDP-wrapped models).
REVISE_KEYS = ((r'^module.', ''), )
_SIZE_MISMATCH = re.compile(r'size mismatch for (\S+):')


def ignore_patterns(cfg: Config) -> List[re.Pattern]:
    """The compiled ``checkpoint_fit.ignore_keys`` of a config (none when the setting is absent)."""
    setting = cfg.get(FIT_SETTING) or {}
    if not isinstance(setting, dict) or set(setting) - {'ignore_keys'}:
        raise ToolError(f'{FIT_SETTING}={setting!r}: allowed is dict(ignore_keys=[regular '
                        'expressions of state-dict keys that need not fit])')
    keys = setting.get('ignore_keys', [])
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise ToolError(f'{FIT_SETTING}.ignore_keys={keys!r} must be a list of regular expressions')
    patterns = []
    for key in keys:
        try:
            patterns.append(re.compile(key))
        except re.error as error:
            raise ToolError(f'{FIT_SETTING}.ignore_keys: {key!r} is not a regular expression ({error})') from None
    return patterns


def checkpoint_state_dict(filename: str) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, with keys revised as the Runner revises them."""
    checkpoint = safe_torch_load(filename, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ToolError(f'{filename} holds a {type(state_dict).__name__}, not a model state dict '
                        '(a dict of tensors, alone or under "state_dict")')
    revised = {}
    for key, value in state_dict.items():
        for pattern, replacement in REVISE_KEYS:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    return revised


def dry_load(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> Tuple[List[str], List[str], List[str]]:
    """Load ``state_dict`` into ``model`` as mmengine's ``load_state_dict`` does, returning the
    missing keys, the unexpected keys and the other messages (shape mismatches) instead of
    logging them. On a meta model the copies are no-ops."""
    missing: List[str] = []
    unexpected: List[str] = []
    messages: List[str] = []

    def load(module: nn.Module, local_state_dict: dict, prefix: str = '') -> None:
        module._load_from_state_dict(local_state_dict, prefix, {}, True, missing, unexpected, messages)
        for name, child in module._modules.items():
            if child is not None:
                child_prefix = f'{prefix}{name}.'
                load(child, {k: v for k, v in local_state_dict.items() if k.startswith(child_prefix)},
                     child_prefix)

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')  # "copying ... to a meta parameter is a no-op"
        load(model, dict(state_dict))
    # mmengine ignores BatchNorm counters missing from old checkpoints.
    missing = [key for key in missing if not key.endswith('num_batches_tracked')]
    return missing, unexpected, messages


def _shorten(items: Sequence[str], limit: int = 5) -> str:
    shown = ', '.join(items[:limit])
    return shown + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def check_checkpoint_fits(model: nn.Module, filename: str, ignore_keys: Sequence[re.Pattern] = (),
                          setting: str = 'checkpoint') -> None:
    """Refuse a checkpoint whose state dict does not fit ``model``.

    Args:
        model: The model built from the config (see ``build_model_for_checks``).
        filename: The checkpoint file.
        ignore_keys: Patterns of keys that need not fit (``checkpoint_fit.ignore_keys``).
        setting: What named the checkpoint, for the message (``load_from``, ``--resume``...).

    Raises:
        ToolError: naming the file, the first missing / unexpected / mismatched keys and their
            counts; CheckpointError: the file is not a readable checkpoint.
    """
    state_dict = checkpoint_state_dict(filename)
    try:
        missing, unexpected, messages = dry_load(model, state_dict)
    except ValueError as error:  # a module's own check (e.g. KAT's) refused the checkpoint
        raise ToolError(f'{setting} {filename} does not fit the model: {error}') from error
    mismatched = []
    for message in messages:
        match = _SIZE_MISMATCH.match(message)
        if match is None:
            raise ToolError(f'{setting} {filename} does not fit the model: {message}')
        mismatched.append((match.group(1), message))

    def kept(keys: List[str]) -> List[str]:
        return [key for key in keys if not any(p.match(key) for p in ignore_keys)]

    missing, unexpected = kept(missing), kept(unexpected)
    mismatched_keys = kept([key for key, _ in mismatched])
    if not (missing or unexpected or mismatched_keys):
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} model keys missing from it ({_shorten(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} keys the model does not have ({_shorten(unexpected)})')
    if mismatched_keys:
        shapes = [f'{key} {tuple(state_dict[key].shape)} vs the model\'s '
                  f'{tuple(model.state_dict()[key].shape)}' if key in state_dict else key
                  for key in mismatched_keys]
        parts.append(f'{len(shapes)} shape mismatches ({_shorten(shapes, 3)})')
    raise ToolError(
        f'{setting} {filename} does not fit the model: ' + '; '.join(parts) + '. Is it a '
        f'checkpoint of this config? Keys that may legitimately differ are listed in the config '
        f'as {FIT_SETTING} = dict(ignore_keys=[regular expressions])')
