"""Checks of a task config that the tools run before the Runner's long set-up.

Each check raises :class:`ToolError` with one sentence naming the setting, its value and what
is allowed: an unknown ``--cfg-options`` key, a model the config cannot build, a missing data
root, annotation file or image folder of a dataloader or evaluator, a missing pretrained
checkpoint of an ``init_cfg``.
"""
import copy
import difflib
import inspect
import os
import os.path as osp
import sys
from typing import Any, Iterator, List, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner
from torch import nn

from .errors import ToolError, building_classes, describe_exception

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')
# Evaluator settings that name a file read from the working directory (mmdet's CocoMetric,
# LVISMetric, CocoPanopticMetric...).
EVALUATOR_FILE_KEYS = ('ann_file', )
# Top-level settings the Runner reads without their being in every config: ``--cfg-options``
# may create them (e.g. ``randomness.seed=0``).
RUNNER_SETTINGS = frozenset(
    set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}
    | {'model_wrapper_cfg', 'find_unused_parameters', 'compile', 'sync_bn', 'runner_type',
       'checkpoint_fit'})
# Exceptions that building a model from a config raises for bad settings.
BUILD_ERRORS = (ValueError, TypeError, KeyError, AssertionError, IndexError)


def _describe(node: Any, wrong: str, limit: int = 12) -> str:
    """The keys (or indices) of ``node``, the ones closest to ``wrong`` first."""
    keys = [str(k) for k in node] if isinstance(node, dict) else [str(i) for i in range(len(node))]
    close = difflib.get_close_matches(wrong, keys, n=3)
    shown = ', '.join(keys[:limit]) + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')
    return (f'did you mean {" or ".join(map(repr, close))}? ' if close else '') + f'it has: {shown}'


# Registries whose classes the Runner builds from the config outside ``model`` (which the early
# model build checks), searched in this order for the ``type`` of a dict given a new key.
OUTSIDE_MODEL_REGISTRIES = ('LOOPS', 'HOOKS', 'OPTIM_WRAPPERS', 'OPTIMIZERS', 'PARAM_SCHEDULERS',
                            'DATASETS', 'TRANSFORMS', 'DATA_SAMPLERS', 'METRICS', 'EVALUATOR',
                            'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS')
# Keys that mmengine's builders take out of such a dict before calling its class.
BUILDER_KEYS = frozenset({'type', '_scope_', 'priority', 'convert_to_iter_based', 'constructor',
                          'paramwise_cfg'})


def _registered(type_name: Any, scope: Any) -> Any:
    """The class (or function) registered as ``type_name`` in the scope, or None."""
    if not isinstance(type_name, str):
        return type_name if callable(type_name) else None
    import mmengine.registry as registries
    for name in OUTSIDE_MODEL_REGISTRIES:
        with getattr(registries, name).switch_scope_and_registry(scope) as registry:
            found = registry.get(type_name)
        if found is not None:
            return found
    return None


def _check_new_argument(cfg: Config, key: str, where: str, node: dict, argument: str) -> None:
    """Refuse a new key of a typed dict (``train_cfg.max_epoch``) that its class does not take:
    otherwise the Runner fails on it only when it builds that part, long after the start."""
    if 'type' not in node or argument in BUILDER_KEYS:
        return
    target = _registered(node['type'], cfg.get('default_scope'))
    try:
        parameters = inspect.signature(target).parameters if target is not None else None
    except (TypeError, ValueError):
        parameters = None
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return  # an unknown class, or one that takes any keyword: nothing to check against
    names = [name for name in parameters if name != 'self']
    if argument not in names:
        raise ToolError(f'--cfg-options {key}: {where} is a {node["type"]}, which takes no '
                        f'{argument!r}; {_describe(dict.fromkeys(names), argument)}')


def check_cfg_option_keys(cfg: Config, options: dict) -> None:
    """Refuse a ``--cfg-options`` key that names a place the config does not have.

    mmengine merges any key, creating the dicts on its path, so a typo (``train_dataloder``)
    silently adds an unused setting. A key is accepted when every dict on its path exists
    (a new last component adds a setting to an existing dict), with two exceptions: a
    top-level Runner setting may be created (``randomness.seed=0``), and below a dict with a
    ``type`` new keys are arguments of that class (the early model build refuses unknown ones
    under ``model``). List items are addressed by index (``param_scheduler.0.end``).
    """
    for key in options:
        parts = key.split('.')
        node: Any = cfg._cfg_dict
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth]) or 'the config'
            if not isinstance(node, (dict, list, tuple)):
                raise ToolError(f'--cfg-options {key}: {where} is {node!r}, not a dict or list')
            if depth == len(parts) - 1:
                if isinstance(node, dict) and part not in node and parts[0] != 'model':
                    _check_new_argument(cfg, key, where, node, part)
                break  # the setting itself: new or changed
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif (depth == 0 and part in RUNNER_SETTINGS) or (isinstance(node, dict) and 'type' in node):
                break
            else:
                raise ToolError(
                    f'--cfg-options {key}: {where} has no {part!r}; {_describe(node, part)}. '
                    'A key must follow dicts that exist in the config (print it with '
                    'python -c "from mmengine import Config; print(Config.fromfile(CONFIG).pretty_text)")')


def _datasets(dataset: Any, path: str) -> Iterator[Tuple[str, dict]]:
    """``(config path, dataset config)`` of a dataset and of those inside its wrappers
    (RepeatDataset, ClassBalancedDataset, ConcatDataset...)."""
    if not isinstance(dataset, dict):
        return
    yield path, dataset
    yield from _datasets(dataset.get('dataset'), f'{path}.dataset')
    for index, inner in enumerate(dataset.get('datasets') or []):
        yield from _datasets(inner, f'{path}.datasets.{index}')


def _loader_datasets(cfg: Config, loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    for name in loaders:
        loader = cfg.get(name)
        if isinstance(loader, dict):
            yield from _datasets(loader.get('dataset'), f'{name}.dataset')


def _evaluators(cfg: Config, names: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    for name in names:
        evaluator = cfg.get(name)
        if isinstance(evaluator, dict):
            evaluator = evaluator.get('metrics', evaluator)  # an Evaluator dict holds metrics
        if isinstance(evaluator, dict):
            yield name, evaluator
        elif isinstance(evaluator, (list, tuple)):
            for index, metric in enumerate(evaluator):
                if isinstance(metric, dict):
                    yield f'{name}.{index}', metric


def set_data_root(cfg: Config, data_root: str) -> None:
    """``--data-root``: move the config's dataset to ``data_root``.

    Every dataset of the three dataloaders gets ``data_root`` (their annotation files and
    image folders are relative to it), and every evaluator file (``ann_file``) under the old
    data root moves with it. The dataloaders must share one data root: a config that reads
    several datasets is moved with ``--cfg-options`` instead.
    """
    datasets = [(path, d) for path, d in _loader_datasets(cfg, DATALOADERS) if d.get('data_root')]
    old_roots = sorted({osp.normpath(d['data_root']) for _, d in datasets})
    if not old_roots:
        raise ToolError(f'--data-root {data_root}: no dataset of the config has a data_root to '
                        'move; set the dataset paths with --cfg-options')
    if len(old_roots) > 1:
        raise ToolError(f'--data-root {data_root}: the dataloaders read several data roots '
                        f'{old_roots}; set each dataset\'s data_root with --cfg-options')
    old_root = old_roots[0]
    for _, dataset in datasets:
        dataset['data_root'] = data_root
    if isinstance(cfg.get('data_root'), str):
        cfg.data_root = data_root
    moved = set()  # test_evaluator = val_evaluator may be one dict
    for path, evaluator in _evaluators(cfg, EVALUATORS):
        if id(evaluator) in moved:
            continue
        moved.add(id(evaluator))
        for key in EVALUATOR_FILE_KEYS:
            value = evaluator.get(key)
            if not isinstance(value, str) or not value:
                continue
            relative = osp.relpath(osp.normpath(value), old_root)
            if relative.startswith(os.pardir):
                print(f'note: --data-root leaves {path}.{key}={value!r} as it is: it is not under '
                      f'the old data root {old_root!r}', file=sys.stderr)
            else:
                evaluator[key] = osp.join(data_root, relative)


def _is_local(path: str, backend_args: Any = None) -> bool:
    """Whether a path is read from the local file system (not a URL or a storage backend)."""
    remote_backend = isinstance(backend_args, dict) and backend_args.get('backend', 'local') != 'local'
    return '://' not in path and not remote_backend


def _dataset_problems(path: str, dataset: dict) -> Iterator[str]:
    """Missing paths of one dataset config, resolved as mmengine's BaseDataset resolves them:
    ``ann_file`` and ``data_prefix`` entries relative to ``data_root`` when it is set, else to
    the working directory."""
    root = dataset.get('data_root')
    backend_args = dataset.get('backend_args')
    if isinstance(root, str) and root:
        if not _is_local(root, backend_args):
            return
        if not osp.isdir(osp.expanduser(root)):
            yield f'{path}.data_root={root!r} does not exist'
            return
    else:
        root = None

    def resolve(value: str) -> str:
        value = osp.expanduser(value)
        return value if root is None or osp.isabs(value) else osp.join(osp.expanduser(root), value)

    ann_file = dataset.get('ann_file')
    if isinstance(ann_file, str) and ann_file and _is_local(ann_file, backend_args):
        if not osp.isfile(resolve(ann_file)):
            where = f' (under data_root {root!r})' if root is not None and not osp.isabs(ann_file) else ''
            yield f'{path}.ann_file={ann_file!r}{where} does not exist'
    prefix = dataset.get('data_prefix')
    prefixes = prefix.items() if isinstance(prefix, dict) else [(None, prefix)]
    for name, value in prefixes:
        if isinstance(value, str) and value and _is_local(value, backend_args):
            if not osp.exists(resolve(value)):
                setting = f'{path}.data_prefix' + (f'.{name}' if name else '')
                where = f' (under data_root {root!r})' if root is not None and not osp.isabs(value) else ''
                yield f'{setting}={value!r}{where} does not exist'


def check_data(cfg: Config, dataloaders: Sequence[str], evaluators: Sequence[str]) -> None:
    """Fail early, naming each setting, when a path the run will read does not exist: data
    roots, annotation files and image folders of the dataloaders' datasets, and the files of
    the evaluators (relative to the working directory, as the metrics open them)."""
    problems: List[str] = []
    for path, dataset in _loader_datasets(cfg, dataloaders):
        problems += _dataset_problems(path, dataset)
    for path, evaluator in _evaluators(cfg, evaluators):
        for key in EVALUATOR_FILE_KEYS:
            value = evaluator.get(key)
            if (isinstance(value, str) and value and _is_local(value, evaluator.get('backend_args'))
                    and not osp.isfile(osp.expanduser(value))):
                problems.append(f'{path}.{key}={value!r} does not exist')
    if problems:
        raise ToolError(
            f'data not found (working directory {os.getcwd()}): ' + '; '.join(problems) +
            '. Put the dataset there (README.md, "Using real data"), move the whole dataset with '
            '--data-root DIR, set the paths with --cfg-options, or generate a small one with '
            'tools/misc/generate_data.py.')


def _pretrained_settings(node: Any, path: str) -> Iterator[Tuple[str, str]]:
    """``(config path, checkpoint)`` of every pretrained initialisation below ``node``:
    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (alone or in a list) and the older
    ``pretrained='...'`` argument (mmseg's EncoderDecoder, mmdet's backbones)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'pretrained' and isinstance(value, str):
                yield f'{path}.pretrained', value
            elif key == 'init_cfg':
                inits = [(f'{path}.init_cfg', value)] if isinstance(value, dict) else [
                    (f'{path}.init_cfg.{i}', v) for i, v in enumerate(value or [])]
                for init_path, init in inits:
                    if isinstance(init, dict) and init.get('type') == 'Pretrained' and isinstance(
                            init.get('checkpoint'), str):
                        yield f'{init_path}.checkpoint', init['checkpoint']
            else:
                yield from _pretrained_settings(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained_settings(value, f'{path}.{index}')


def check_pretrained_files(cfg: Config) -> None:
    """Fail early when a local checkpoint that initialises part of the model does not exist
    (URLs and ``torchvision://``-style names are left to mmengine's loaders)."""
    for setting, checkpoint in _pretrained_settings(cfg.model, 'model'):
        if _is_local(checkpoint) and not osp.isfile(osp.expanduser(checkpoint)):
            raise ToolError(
                f'{setting}={checkpoint!r} does not exist (working directory {os.getcwd()}): '
                f'point it at the checkpoint (--cfg-options {setting}=PATH), or train from '
                f'scratch without it (set {setting.rsplit(".", 1)[0]} to None in the config)')


def _config_path_of(node: Any, type_name: str, path: str) -> Iterator[str]:
    """Config paths of the dicts below ``node`` whose ``type`` is ``type_name`` (scoped or not)."""
    if isinstance(node, dict):
        node_type = node.get('type')
        if isinstance(node_type, str) and node_type.rsplit('.', 1)[-1] == type_name:
            yield path
        for key, value in node.items():
            yield from _config_path_of(value, type_name, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _config_path_of(value, type_name, f'{path}.{index}')


def _model_config(cfg: Config) -> ConfigDict:
    """The model config as the Runner builds it (mmpretrain keeps ``data_preprocessor`` at the
    top level and the Runner hands it to the model)."""
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None and isinstance(model, dict):
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    return model


def build_model_for_checks(cfg: Config) -> nn.Module:
    """Build the config's model once before the Runner, to report bad settings in one line and
    to check checkpoints against it.

    The model is built on the meta device: no memory for the weights and no random numbers
    drawn, so the Runner's own build (after it seeds) is unchanged. A model whose construction
    needs real tensors is built on the CPU instead, with the random state restored.

    Raises:
        ToolError: naming the config dict (e.g. ``model.backbone (RKAN)``) and the message of
            the ValueError/TypeError/KeyError/AssertionError the build raised.
    """
    init_default_scope(cfg.default_scope)
    model_cfg = _model_config(cfg)
    try:
        try:
            with torch.device('meta'):
                return MODELS.build(copy.deepcopy(model_cfg))
        except (RuntimeError, NotImplementedError):  # e.g. ``.item()`` on a meta tensor
            with torch.random.fork_rng(devices=[]):
                return MODELS.build(model_cfg)
    except BUILD_ERRORS as error:
        raise ToolError(f'{_where(cfg, error)}: {describe_exception(error)}') from error


def _where(cfg: Config, error: BaseException) -> str:
    """``model.backbone (RKAN)``: the innermost config dict whose class raised ``error``."""
    for class_name in building_classes(error):
        paths = list(_config_path_of(cfg.model, class_name, 'model'))
        if paths:
            return f'{" or ".join(paths)} ({class_name})'
    return 'model'
