"""Helpers shared by the KAT and KATDet tests."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from mmrkan.registry import task_registry

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def build_model(config: str, **model_overrides) -> torch.nn.Module:
    """The model of a config file, built in its task's scope (SyncBN reverted for the CPU)."""
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model
    model_cfg.update(model_overrides)
    if cfg.default_scope == 'mmpretrain':  # mmpretrain keeps the preprocessor top-level
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    return revert_sync_batchnorm(task_registry(cfg.default_scope).build(model_cfg))


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
