"""Cheap checks of large configs (for tests): models built without storage, and the keys that say
which configs share a training recipe or a kind of backbone."""
import contextlib
import copy
import functools
import inspect
import json
import os.path as osp
from typing import Any, Dict, Iterator
from unittest import mock

import torch
import mmengine.config.utils
from mmengine.config import Config
from mmengine.fileio import load
from mmengine.model import BaseModel
from torch.overrides import TorchFunctionMode

from mmrkan.analysis import build_task_model
from mmrkan.models.backbones.rkan import RKAN

# Settings that only change the sizes of a backbone, not the code it runs.
_SIZE_SETTINGS = frozenset({
    'arch', 'base_channels', 'base_width', 'degrees', 'expansion', 'grid_sizes', 'groups',
    'in_channels', 'num_classes', 'reduce_factor', 'stem_channels', 'width_per_group'
})
# Depths of the ResNet family built from basic blocks; the others use bottlenecks.
_BASIC_BLOCK_DEPTHS = (18, 34)


class _ParametersOnMeta(TorchFunctionMode):
    """Tensor factories called without a device create meta tensors (shapes, no storage).

    Unlike ``with torch.device('meta')``, other factories stay on the CPU, so constructors that
    compute settings with tensors (mmpretrain's ResNet: ``torch.linspace(...)[i].item()``) work.
    """

    _FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self._FACTORIES and kwargs.get('device') is None:
            kwargs['device'] = 'meta'
        return func(*args, **kwargs)


def build_model_on_meta(cfg: Config) -> BaseModel:
    """The config's model (as :func:`mmrkan.analysis.build_task_model` builds it) with its
    parameters and buffers on the meta device: the full-size model in a fraction of the time and
    no memory, for parameter counts and shape-only forward passes (``torch.empty(..., device=
    'meta')`` inputs). Nothing is initialised."""
    with _ParametersOnMeta():
        return build_task_model(cfg)


@functools.lru_cache(maxsize=None)
def _package_config_index(package_path: str) -> Dict[str, dict]:
    """Config name -> metafile entry of an installed OpenMMLab package (as mmengine reads it)."""
    index = {}
    for metafile in load(osp.join(package_path, '.mim', 'model-index.yml'))['Import']:
        for entry in load(osp.join(package_path, '.mim', metafile))['Models']:
            if 'Config' in entry:
                index.setdefault(entry['Config'].partition('/')[-1], entry)
    return index


def _cached_cfg_metainfo(package_path: str, cfg_path: str) -> dict:
    index = _package_config_index(package_path)
    if cfg_path not in index:
        raise ValueError(f'{cfg_path} is not a config name of {package_path}')  # mmengine's signal
    return index[cfg_path]


@contextlib.contextmanager
def cached_package_configs() -> Iterator[None]:
    """Within the context, ``Config.fromfile`` reads each installed package's metafiles once.

    mmengine resolves every ``mmpretrain::...`` base by loading all of the package's metafiles
    (~500 YAML files for mmpretrain, ~0.4 s) to check whether the name is a model name; the
    answer is the same for the whole test session.
    """
    with mock.patch.object(mmengine.config.utils, '_get_cfg_metainfo', _cached_cfg_metainfo):
        yield


def _with_rkan_defaults(backbone: dict) -> dict:
    """An RKAN config with the settings it leaves at their defaults spelled out."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(RKAN).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    return {**defaults, **backbone}


def _without_sizes(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get('type') == 'RKAN':
            node = _with_rkan_defaults(node)
        kept = {}
        for key, value in node.items():
            if key in _SIZE_SETTINGS or key == 'init_cfg':
                continue
            if key == 'depth':
                value = 'basic blocks' if value in _BASIC_BLOCK_DEPTHS else 'bottlenecks'
            elif key == 'stages' and isinstance(value, (list, tuple)):
                # One branch or several: only the last stage's branch has the second KAN conv.
                value = f'{len(value)} stage(s)'
            kept[key] = _without_sizes(value)
        return kept
    if isinstance(node, (list, tuple)):
        return [_without_sizes(value) for value in node]
    return node


def _canonical(value: Any) -> str:
    """One text per value, whatever the key order or the tuple/list choice of the config."""
    return json.dumps(value, sort_keys=True, default=repr)


def backbone_kind(cfg: Config) -> str:
    """What a config's model runs, sizes aside: the model and head types and the backbone config
    without its size settings (depth within a block type, widths, groups, arch, classes,
    RKAN reduce factor, expansion, degrees and grid sizes). Two configs of one kind train through
    the same code."""
    model = cfg.model
    return _canonical([model.type, model.get('head', {}).get('type'), _without_sizes(model.backbone.to_dict())])


def recipe_key(cfg: Config) -> str:
    """What a config trains with, the model aside: task, training dataset and pipeline, input
    normalisation, batch augments (where the config sets them: the data preprocessor or the
    classifier's ``train_cfg``), optimizer, schedule and training loop."""
    preprocessor = copy.deepcopy(cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {})
    batch_augments = preprocessor.pop('batch_augments', None) or cfg.model.get('train_cfg')
    preprocessor.pop('num_classes', None)
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    return _canonical([cfg.default_scope, dataset.type, dataset.pipeline, preprocessor, batch_augments,
                       cfg.optim_wrapper, cfg.param_scheduler, cfg.train_cfg])
