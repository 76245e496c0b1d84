"""Does a checkpoint fit the model? Checked before the Runner loads it.

mmengine loads ``load_from``, ``--resume`` and ``tools/test.py CKPT`` checkpoints with
``strict=False``: missing keys, unexpected keys and shape mismatches are logged as warnings and
the model keeps its random weights for them, so a wrong checkpoint evaluates to mAP 0 or
fine-tunes from noise without an error. The tools instead load the checkpoint into the meta
model of :func:`build_model_for_checks` (a no-op copy that runs each module's own loading code,
e.g. position-embedding resizing) and refuse it when anything does not fit, and refuse a
checkpoint holding NaN or infinite weights (the last one of a run that diverged).

Fine-tuning with ``load_from`` on another number of classes is the exception: tensors of the
task heads (the modules whose config sets ``num_classes``) whose shapes differ only by the
class count keep their initialisation, with one warning line, as mmdet users expect.

Other keys that are legitimately absent are stated by the config, as regular expressions
matched at the start of the key::

    checkpoint_fit = dict(ignore_keys=[r'roi_head\\.bbox_head\\.fc_(cls|reg)\\.'])

A model key matching one of them may be missing from the checkpoint or have another shape
there (it keeps its initialisation); a checkpoint key matching one may be unused.
"""
import os
import os.path as osp
import re
import tempfile
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from mmengine.config import Config
from torch import nn

from mmrkan.engine import safe_torch_load
from mmrkan.engine.hooks import non_finite_names
from .errors import ToolError

FIT_SETTING = 'checkpoint_fit'
# What mmengine's Runner.load_checkpoint strips from checkpoint keys (DDP-wrapped models).
REVISE_KEYS = ((r'^module.', ''), )
_SIZE_MISMATCH = re.compile(r'size mismatch for (\S+):')
# Mismatched keys listed in the error itself, and ignore_keys patterns printed with it; more go
# to a report file it names.
LISTED_KEYS = 12
LISTED_PATTERNS = 8
# The task each library's configs need from tools/model_converters (``--task``).
CONVERTER_TASKS = {'mmpretrain': 'classification', 'mmseg': 'segmentation', 'mmdet': 'detection'}


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


def _revised(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    revised = {}
    for key, value in state_dict.items():
        for pattern, replacement in REVISE_KEYS:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    return revised


def _state_dict_of(checkpoint: Any, filename: str) -> Dict[str, torch.Tensor]:
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ToolError(f'{filename} holds a {type(state_dict).__name__}, not a model state dict '
                        '(a dict of tensors, alone or under "state_dict")')
    return state_dict


def checkpoint_state_dict(filename: str) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, with keys revised as the Runner revises them."""
    return _revised(_state_dict_of(safe_torch_load(filename, map_location='cpu'), filename))


def check_finite(state_dict: Dict[str, torch.Tensor], filename: str, setting: str = 'checkpoint') -> None:
    """Refuse a checkpoint holding NaN or infinite weights (what a diverged run leaves)."""
    bad = non_finite_names([(k, v) for k, v in state_dict.items() if torch.is_floating_point(v)])
    if bad:
        raise ToolError(f'{setting} {filename} holds non-finite weights: {len(bad)} of its {len(state_dict)} '
                        f'tensors have NaN or infinite values ({_shorten(bad, 3)}); it comes from a run '
                        'that diverged: use an earlier checkpoint of that run')


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


def _config_node(model_cfg: Any, module_path: str) -> Any:
    """The config dict of a submodule (``roi_head.bbox_head``, ``auxiliary_head.0``), or None."""
    node = model_cfg
    for part in module_path.split('.') if module_path else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def task_heads(model: nn.Module, model_cfg: Any) -> Dict[str, nn.Module]:
    """The model's task heads by module path: the modules whose config sets ``num_classes``
    (classifier heads, box and mask heads, decode and auxiliary heads; not mmdet's RPN head,
    whose one class is fixed)."""
    heads = {}
    for name, module in model.named_modules():
        node = _config_node(model_cfg, name)
        if name and isinstance(node, dict) and 'num_classes' in node and isinstance(
                getattr(module, 'num_classes', None), int):
            heads[name] = module
    return heads


def _other_class_count(head: nn.Module, model_shape: Sequence[int], checkpoint_shape: Sequence[int]) -> Optional[int]:
    """The checkpoint's class count when the two shapes differ only by the head's class count
    (``n``, ``n + 1`` with a background class, ``k * n`` for box deltas or anchors), else None."""
    if len(model_shape) != len(checkpoint_shape):
        return None
    differing = [d for d, (a, b) in enumerate(zip(model_shape, checkpoint_shape)) if a != b]
    if len(differing) != 1:
        return None
    ours, theirs = model_shape[differing[0]], checkpoint_shape[differing[0]]
    counts = {head.num_classes, getattr(head, 'out_channels', head.num_classes)}
    for count in counts:
        for background in (0, 1):
            if count + background > 0 and ours % (count + background) == 0:
                factor = ours // (count + background)
                if theirs % factor == 0 and theirs // factor - background >= 1:
                    return theirs // factor - background
    return None


def class_count_mismatches(model: nn.Module, model_cfg: Any, state_dict: Dict[str, torch.Tensor],
                           keys: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    """Of the shape-mismatched ``keys``, those of a task head that differ only by its number of
    classes: key -> (the config's class count, the checkpoint's)."""
    heads = task_heads(model, model_cfg)
    own = model.state_dict()
    found = {}
    for key in keys:
        owners = [path for path in heads if key.startswith(path + '.')]
        if not owners or key not in state_dict or key not in own:
            continue
        head = heads[max(owners, key=len)]
        theirs = _other_class_count(head, tuple(own[key].shape), tuple(state_dict[key].shape))
        if theirs is not None:
            found[key] = (head.num_classes, theirs)
    return found


def ignore_keys_cover(keys: Set[str], all_keys: Set[str]) -> List[str]:
    """The fewest start-of-key regular expressions that match exactly ``keys`` among
    ``all_keys``: a module's prefix where every key under it is in ``keys``, else the key.
    BatchNorm counters, which need not fit, are matched or not as it comes."""
    all_keys = {k for k in all_keys if not k.endswith('num_batches_tracked')}
    patterns = set()
    for key in keys:
        parts = key.split('.')
        chosen = re.escape(key) + '$'
        for depth in range(1, len(parts)):
            prefix = '.'.join(parts[:depth]) + '.'
            if all(k in keys for k in all_keys if k.startswith(prefix)):
                chosen = re.escape(prefix)
                break
        patterns.add(chosen)
    return sorted(patterns)


def _report_file(report_dir: Optional[str], filename: str) -> str:
    name = f'checkpoint_fit_{osp.splitext(osp.basename(filename))[0]}.txt'
    if report_dir is None:
        handle, path = tempfile.mkstemp(prefix=name[:-4] + '_', suffix='.txt')
        os.close(handle)
        return path
    os.makedirs(report_dir, exist_ok=True)
    return osp.join(report_dir, name)


def check_checkpoint_fits(model: nn.Module, filename: str, ignore_keys: Sequence[re.Pattern] = (),
                          setting: str = 'checkpoint', model_cfg: Any = None,
                          report_dir: Optional[str] = None) -> Dict[str, Tuple[int, int]]:
    """Refuse a checkpoint whose state dict does not fit ``model`` or holds non-finite weights.

    Args:
        model: The model built from the config (see ``build_model_for_checks``).
        filename: The checkpoint file.
        ignore_keys: Patterns of keys that need not fit (``checkpoint_fit.ignore_keys``).
        setting: What named the checkpoint, for the message (``load_from``, ``--resume``...).
        model_cfg: The config of ``model``, for ``load_from`` only: keys of its task heads that
            differ only by the number of classes are then accepted (fine-tuning).
        report_dir: Where the list of mismatched keys goes when it is too long for the
            message (default: a temporary file).

    Returns:
        The accepted class-count mismatches: key -> (the config's classes, the checkpoint's).

    Raises:
        ToolError: naming the file and every missing / unexpected / mismatched key (or the file
            that lists them) with a ready-to-paste ``checkpoint_fit`` setting; CheckpointError:
            the file is not a readable checkpoint.
    """
    state_dict = checkpoint_state_dict(filename)
    check_finite(state_dict, filename, setting)
    try:
        missing, unexpected, messages = dry_load(model, state_dict)
    except ValueError as error:  # a module's own check (e.g. KAT's) refused the checkpoint
        raise ToolError(f'{setting} {filename} does not fit the model: {error}') from error
    mismatched = []
    for message in messages:
        match = _SIZE_MISMATCH.match(message)
        if match is None:
            raise ToolError(f'{setting} {filename} does not fit the model: {message}')
        mismatched.append(match.group(1))

    def kept(keys: List[str]) -> List[str]:
        return [key for key in keys if not any(p.match(key) for p in ignore_keys)]

    missing, unexpected, mismatched = kept(missing), kept(unexpected), kept(mismatched)
    other_classes = class_count_mismatches(model, model_cfg, state_dict, mismatched) if model_cfg else {}
    mismatched = [key for key in mismatched if key not in other_classes]
    if not (missing or unexpected or mismatched):
        return other_classes

    own = model.state_dict()
    shapes = [f'{key} {tuple(state_dict[key].shape)} vs the model\'s {tuple(own[key].shape)}'
              for key in mismatched]
    parts = [(f'{len(missing)} model keys missing from it', missing),
             (f'{len(unexpected)} keys the model does not have', unexpected),
             (f'{len(shapes)} shape mismatches', shapes)]
    parts = [(title, items) for title, items in parts if items]
    patterns = ignore_keys_cover(set(missing) | set(unexpected) | set(mismatched), set(own) | set(state_dict))
    raw_strings = ', '.join("r'" + pattern + "'" for pattern in patterns)
    setting_line = f'{FIT_SETTING} = dict(ignore_keys=[{raw_strings}])'
    number = len(missing) + len(unexpected) + len(mismatched)
    if number <= LISTED_KEYS and len(patterns) <= LISTED_PATTERNS:
        listing = '; '.join(f'{title} ({", ".join(items)})' for title, items in parts)
        suggestion = f'If these keys may keep their initialisation, add to the config: {setting_line}'
    else:
        report = _report_file(report_dir, filename)
        with open(report, 'w') as f:
            f.write(f'{setting} {filename} does not fit the model of the config.\n')
            for title, items in parts:
                f.write(f'\n{title}:\n' + ''.join(f'  {item}\n' for item in items))
            f.write(f'\nTo let these keys keep their initialisation, add to the config:\n{setting_line}\n')
        listing = '; '.join(f'{title} ({", ".join(items[:3])}{", ..." if len(items) > 3 else ""})'
                            for title, items in parts) + f'; all {number} are listed in {report}'
        suggestion = (f'If these keys may keep their initialisation, add to the config: {setting_line}'
                      if len(patterns) <= LISTED_PATTERNS else
                      f'The {FIT_SETTING} setting that lets them keep their initialisation is in {report}')
    raise ToolError(f'{setting} {filename} does not fit the model: {listing}. Is it a checkpoint of this '
                    f'config? {suggestion}')


def _init_cfg_checkpoints(node: Any, path: str) -> Iterator[Tuple[str, str, str, Optional[str]]]:
    """``(setting, module path, checkpoint, prefix)`` of every ``init_cfg=dict(type='Pretrained',
    ...)`` below ``node``."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        inits = [('init_cfg', init)] if isinstance(init, dict) else [
            (f'init_cfg.{i}', v) for i, v in enumerate(init or []) if isinstance(init, (list, tuple))]
        for key, value in inits:
            if isinstance(value, dict) and value.get('type') == 'Pretrained' and isinstance(
                    value.get('checkpoint'), str):
                yield f'{path}.{key}.checkpoint', path, value['checkpoint'], value.get('prefix')
        for key, value in node.items():
            if key != 'init_cfg':
                yield from _init_cfg_checkpoints(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _init_cfg_checkpoints(value, f'{path}.{index}')


def check_init_checkpoints(cfg: Config, model: nn.Module) -> None:
    """Refuse a local ``init_cfg`` pretrained checkpoint that its module's loading code would
    refuse during the Runner's initialisation, or of which no key fits that module, naming the
    converter's ``--task`` when it was converted for another task."""
    for setting, config_path, checkpoint, prefix in _init_cfg_checkpoints(cfg.model, 'model'):
        module_path = config_path.split('.', 1)[1] if '.' in config_path else ''
        if '://' in checkpoint or not osp.isfile(osp.expanduser(checkpoint)):
            continue  # URLs are mmengine's; a missing file is check_pretrained_files'
        try:
            module = model.get_submodule(module_path)
        except AttributeError:
            continue  # the config nesting is not the module nesting: nothing to compare with
        loaded = safe_torch_load(checkpoint, map_location='cpu')
        state_dict = _revised(_state_dict_of(loaded, checkpoint))
        if prefix:
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        check_finite(state_dict, checkpoint, setting)
        try:
            missing, unexpected, _ = dry_load(module, state_dict)
        except ValueError as error:
            problem = str(error).rstrip('.')
        else:
            fitting = set(state_dict) - set(unexpected)
            problem = None if fitting or not state_dict else (
                f'none of its {len(state_dict)} keys is a key of this module (e.g. {next(iter(state_dict))})')
        if problem is not None:
            hint = _task_hint(cfg, loaded, checkpoint, state_dict, prefix)
            raise ToolError(f'{setting}={checkpoint!r} does not fit {config_path} ({type(module).__name__}): '
                            f'{problem}{hint}')


def _task_hint(cfg: Config, loaded: Any, checkpoint: str, state_dict: Dict[str, torch.Tensor],
               prefix: Optional[str]) -> str:
    """How to get a checkpoint that fits: the converter's ``--task`` for this config, or the
    ``prefix`` of a whole-model checkpoint."""
    meta = loaded.get('meta') if isinstance(loaded, dict) else None
    needed = CONVERTER_TASKS.get(cfg.get('default_scope'))
    converted_for = meta.get('task') if isinstance(meta, dict) else None
    if converted_for and needed and converted_for != needed:
        source = meta.get('source', 'OFFICIAL_CHECKPOINT')
        converter = 'vit2kat.py' if 'act_init' in meta else 'kat_timm2mmrkan.py'  # what each writes
        return (f'. It was converted with --task {converted_for}; this {cfg.default_scope} config needs '
                f'--task {needed}: python tools/model_converters/{converter} {source} '
                f'{checkpoint} --task {needed}')
    if not prefix and state_dict and all(key.startswith('backbone.') for key in state_dict):
        return ". Its keys start with 'backbone.' (a whole model's checkpoint): add prefix='backbone.' to the init_cfg"
    return ''
