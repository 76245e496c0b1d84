"""Helpers of the zoo backbone tests: the classifier bases of configs/_base_/models, on meta."""
import copy
import os.path as osp
from typing import Optional, Tuple, Type

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

from mmrkan.registry import task_registry

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
MODEL_BASES = osp.join(REPO, 'configs', '_base_', 'models')


def base_model(base: str,
               num_classes: Optional[int] = None,
               depth: Optional[int] = None,
               rkan: Optional[dict] = None) -> ConfigDict:
    """The classifier of ``configs/_base_/models/<base>.py`` as a paper row configures it.

    ``num_classes`` and ``depth`` override the head and the backbone; ``rkan`` (keyword
    arguments of ``RKAN``, e.g. ``{}`` or ``dict(reduce_factor=1)``) wraps the backbone.
    """
    model = copy.deepcopy(Config.fromfile(osp.join(MODEL_BASES, f'{base}.py')).model)
    if num_classes is not None:
        model.head.num_classes = num_classes
    if depth is not None:
        model.backbone.depth = depth
    if rkan is not None:
        model.backbone = ConfigDict(type='RKAN', backbone=model.backbone, **rkan)
    return model


def build_on_meta(cfg: dict, scope: str = 'mmpretrain') -> torch.nn.Module:
    """Build a model config on the meta device (no memory, no initialisation: counts are fast)."""
    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        return task_registry(scope).build(copy.deepcopy(cfg))


def build(cfg: dict, scope: str = 'mmdet') -> torch.nn.Module:
    """Build a (small) model config on the CPU in a task scope."""
    with DefaultScope.overwrite_default_scope(scope):
        return task_registry(scope).build(copy.deepcopy(cfg))


def num_params(module: torch.nn.Module,
               leave_out: Tuple[Type[torch.nn.Module], ...] = ()) -> int:
    """Parameters of ``module``, without those of its submodules of the ``leave_out`` types."""
    left_out = {
        id(param)
        for sub in module.modules() if isinstance(sub, leave_out) for param in sub.parameters()
    }
    return sum(p.numel() for p in module.parameters() if id(p) not in left_out)


def in_millions(count: int) -> float:
    """A count as the RKAN paper prints it: millions, two decimals."""
    return round(count / 1e6, 2)
