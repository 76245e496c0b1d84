"""Checks of a task config that the tools run before the Runner's long set-up.

Each check raises :class:`ToolError` with one sentence naming the setting, its value and what
is allowed (with the nearest valid name where there is one): an unknown ``--cfg-options`` key, a
model the config cannot build, a neck whose input channels are not the backbone's, a missing
data root, annotation file or image folder of a dataloader or evaluator, a missing pretrained
checkpoint of an ``init_cfg``.
"""
import copy
import difflib
import inspect
import os
import os.path as osp
import re
import sys
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.hooks import CheckpointHook
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner, TestLoop, ValLoop
from torch import nn

from .errors import ToolError, building_classes, describe_exception, innermost_build

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
BUILDER_KEYS = frozenset({'type', '_scope_', 'priority', 'convert_to_iter_based', 'epoch_length',
                          'constructor', 'paramwise_cfg'})
# Classes whose ``**kwargs`` go to another function than a base class's ``__init__``, and the
# arguments they accept that way: CheckpointHook passes them to Runner.save_checkpoint, all of
# whose arguments it already sets itself.
KWARGS_PASSED_ON: Dict[type, Tuple[str, ...]] = {CheckpointHook: ()}


def _untyped_class(path: str, node: dict) -> Optional[Tuple[Any, str]]:
    """The class the Runner builds from a top-level dict without a ``type``, and why."""
    if path == 'train_cfg':
        by_epoch = bool(node.get('by_epoch'))
        return (EpochBasedTrainLoop if by_epoch else IterBasedTrainLoop), f' (by_epoch={by_epoch})'
    chosen = {'val_cfg': ValLoop, 'test_cfg': TestLoop, 'optim_wrapper': OptimWrapper,
              'randomness': Runner.set_randomness}
    return (chosen[path], '') if path in chosen else None


def accepted_arguments(target: Any) -> Optional[List[str]]:
    """The keyword arguments ``target(...)`` accepts, following ``**kwargs`` through the base
    classes' ``__init__`` (the ``super().__init__(**kwargs)`` convention), or None when
    anything is accepted (a ``**kwargs`` that goes nowhere known)."""
    if not inspect.isclass(target):
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return None
        return [name for name in parameters if name != 'self']
    names: List[str] = []
    for owner, passed_on in KWARGS_PASSED_ON.items():
        if issubclass(target, owner):
            extra: Optional[Tuple[str, ...]] = passed_on
            break
    else:
        extra = None
    for klass in target.__mro__:
        if '__init__' not in vars(klass) or klass is object:
            continue
        try:
            parameters = inspect.signature(vars(klass)['__init__']).parameters
        except (TypeError, ValueError):
            return None
        names += [name for name, p in parameters.items()
                  if name != 'self' and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return names
        if extra is not None:
            return names + [name for name in extra if name not in names]
    return None  # **kwargs reach object.__init__ only through a class that handles them itself


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
    """Refuse a new key of a dict that the Runner turns into an object (``train_cfg.max_epoch``)
    that the receiving class does not take: otherwise the Runner fails on it only when it builds
    that part, long after the start (a checkpoint hook's argument: at the first save). Dicts
    with a ``type`` name their class; for a few without one the Runner chooses it."""
    if argument in BUILDER_KEYS:
        return
    if 'type' in node:
        target = _registered(node['type'], cfg.get('default_scope'))
        what = f'{where} is a {node["type"]}'
    else:
        untyped = _untyped_class(where, node)
        if untyped is None or (where == 'train_cfg' and argument == 'by_epoch'):
            return
        target, reason = untyped
        verb = 'builds a {} from it' if inspect.isclass(target) else 'passes it to {}'
        what = f'{where} has no type, so the Runner {verb.format(target.__qualname__)}{reason}'
    names = accepted_arguments(target) if target is not None else None
    if names is None:
        return  # an unknown class, or one that takes any keyword: nothing to check against
    if where == 'optim_wrapper':  # tools/train.py --amp makes it an AmpOptimWrapper after the check
        names += [name for name in accepted_arguments(AmpOptimWrapper) or [] if name not in names]
    # Arguments the builders fill in themselves are no settings.
    names = [n for n in names if n not in ('runner', 'dataloader', 'evaluator', 'params', 'optimizer')]
    if argument not in names:
        raise ToolError(f'--cfg-options {key}: {what}, which takes no '
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
        raise ToolError(f'{_where(cfg, error)}: {describe_exception(error)}{_suggestion(error)}') from error


def _init_argument_names(cls: type) -> List[str]:
    """Every named argument of the ``__init__`` methods along ``cls``'s MRO."""
    names: List[str] = []
    for klass in cls.__mro__:
        if '__init__' in vars(klass) and klass is not object:
            try:
                parameters = inspect.signature(vars(klass)['__init__']).parameters
            except (TypeError, ValueError):
                continue
            names += [name for name in parameters if name != 'self' and name not in names]
    return names


def _registry_names(registry: Any) -> List[str]:
    names: List[str] = []
    while registry is not None:
        names += list(getattr(registry, 'module_dict', {}))
        registry = getattr(registry, 'parent', None)
    return names


_UNEXPECTED_ARGUMENT = re.compile(r"unexpected keyword argument '(\w+)'")


def _suggestion(error: BaseException) -> str:
    """``; did you mean 'X'?`` for a misspelt argument or type name of a model config."""
    built, registry, type_name = innermost_build(error)
    match = _UNEXPECTED_ARGUMENT.search(str(error)) if isinstance(error, TypeError) else None
    if match is not None and built is not None:
        wrong, names = match.group(1), _init_argument_names(built)
    elif isinstance(error, KeyError) and built is None and type_name is not None:
        wrong, names = type_name.rsplit('.', 1)[-1], _registry_names(registry)
    else:
        return ''
    close = difflib.get_close_matches(wrong, names, n=3)
    return f'; did you mean {" or ".join(map(repr, close))}?' if close else ''


def _where(cfg: Config, error: BaseException) -> str:
    """``model.backbone (RKAN)``: the innermost config dict whose class raised ``error``."""
    for class_name in building_classes(error):
        paths = list(_config_path_of(cfg.model, class_name, 'model'))
        if paths:
            return f'{" or ".join(paths)} ({class_name})'
    return 'model'


# Input of the backbone's meta-device forward: large enough for 32x downsampling, and the cost
# on the meta device hardly depends on it.
_PROBE_SIZE = 64


def _expected_inputs(cfg: Config) -> Iterator[Tuple[str, Any, Any]]:
    """``(setting, channels it expects, which backbone outputs)`` of what reads the backbone's
    features: the neck (``in_channels``: a list for all outputs, a number for the last one, as
    ViTDet's simple pyramid), else the mmseg heads (by their ``in_index``)."""
    model = cfg.model
    neck = model.get('neck')
    if isinstance(neck, dict):
        if 'in_channels' in neck:
            yield 'model.neck.in_channels', neck['in_channels'], None
        return
    heads = [('decode_head', model.get('decode_head'))]
    auxiliary = model.get('auxiliary_head')
    heads += [(f'auxiliary_head.{i}', h) for i, h in enumerate(auxiliary)] if isinstance(
        auxiliary, (list, tuple)) else [('auxiliary_head', auxiliary)]
    for name, head in heads:
        if isinstance(head, dict) and 'in_channels' in head and 'in_index' in head:
            yield f'model.{name}.in_channels', head['in_channels'], head['in_index']


def check_feature_channels(cfg: Config, model: nn.Module) -> None:
    """Refuse a neck (or mmseg head) whose ``in_channels`` are not the channels of the backbone's
    outputs (e.g. a KAT-T backbone, 192 channels, in a KAT-S UperNet config, 384), which
    otherwise fails at the first forward with a raw convolution shape error. The backbone runs
    once on the meta device (no compute); a backbone that cannot is not checked."""
    backbone = getattr(model, 'backbone', None)
    expected = list(_expected_inputs(cfg))
    if backbone is None or not expected or any(p.device.type != 'meta' for p in backbone.parameters()):
        return
    channels = getattr(backbone, 'in_channels', 3)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')  # e.g. "mmrkan._ext has no meta kernels"
            outputs = backbone(torch.empty(1, channels if isinstance(channels, int) else 3,
                                           _PROBE_SIZE, _PROBE_SIZE, device='meta'))
    except Exception:  # noqa: B902 - not a check this backbone can take; the Runner's forward will
        return
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    if not all(isinstance(o, torch.Tensor) and o.dim() == 4 for o in outputs):
        return
    produced = [int(o.shape[1]) for o in outputs]
    for setting, wanted, index in expected:
        if index is not None:
            indices = index if isinstance(index, (list, tuple)) else [index]
            if not all(isinstance(i, int) and -len(produced) <= i < len(produced) for i in indices):
                continue
            got = [produced[i] for i in indices]
            got = got if isinstance(index, (list, tuple)) else got[0]
        else:
            got = produced if isinstance(wanted, (list, tuple)) else produced[-1]
        if (list(wanted) if isinstance(wanted, (list, tuple)) else wanted) != got:
            width = getattr(backbone, 'embed_dims', None)
            note = f', its embed_dims={width}' if isinstance(width, int) else ''
            raise ToolError(f'{setting}={wanted} but model.backbone ({type(backbone).__name__}{note}) '
                            f'outputs {got} channels: set {setting} (and the in_channels of what '
                            'follows it) to the backbone\'s channels')
