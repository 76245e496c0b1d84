"""What tools/train.py and tools/test.py share: loading a task config, checking everything
that can be checked before the Runner's long set-up, and building the Runner with the hooks
that keep a run safe (divergence, data load errors, fine-tuning on other classes)."""
import copy
import os
import os.path as osp
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrkan.registry import TASK_SCOPES
from .checkpoint_fit import check_checkpoint_fits, check_init_checkpoints, ignore_patterns
from .config_checks import (build_model_for_checks, check_cfg_option_keys, check_data, check_feature_channels,
                            check_pretrained_files, set_data_root)
from .data_checks import check_head_classes, load_datasets, use_fresh_logger
from .errors import ToolError, warn

RUN_MODES = ('train', 'test')


def load_config(path: str, cfg_options: Optional[dict] = None, data_root: Optional[str] = None) -> Config:
    """Load a config of one of the supported tasks, moved to ``data_root`` (``--data-root``)
    and with ``--cfg-options`` merged in last (refused if a key names a place the config does
    not have)."""
    if not osp.isfile(path):
        raise ToolError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if data_root is not None:
        set_data_root(cfg, data_root)
    if cfg_options:
        check_cfg_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TASK_SCOPES:
        raise ToolError(f'{path}: default_scope={scope!r} is not supported; allowed: {list(TASK_SCOPES)}')
    return cfg


def without_amp(optim_wrapper: ConfigDict) -> ConfigDict:
    """A copy of an ``optim_wrapper`` config with ``AmpOptimWrapper`` replaced by the plain fp32
    ``OptimWrapper``: mmengine's AMP wrapper refuses to run without a GPU."""
    optim_wrapper = copy.deepcopy(optim_wrapper)
    if optim_wrapper.get('type') == 'AmpOptimWrapper':
        optim_wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            optim_wrapper.pop(key, None)
    return optim_wrapper


def set_work_dir(cfg: Config, work_dir: Optional[str], config_path: str) -> None:
    """``--work-dir`` if given, else the config's own, else ``work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` without a path resumes, as mmengine finds it."""
    last = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last):
        return None
    with open(last) as f:
        checkpoint = f.read().strip()
    if not osp.exists(checkpoint):
        raise ToolError(f'--resume: {last} names {checkpoint!r}, which does not exist')
    return checkpoint


def _configured(cfg: Config, hook_type: str) -> bool:
    return any(isinstance(h, dict) and str(h.get('type', '')).rsplit('.', 1)[-1] == hook_type
               for h in cfg.get('custom_hooks') or [])


def check_before_run(cfg: Config, mode: str) -> List[dict]:
    """Everything the tools can check before the Runner's set-up, in one-line errors: the
    model builds and its neck takes the backbone's channels; the data of the run exists, its
    annotations load, name existing files and the config's classes (also the heads'); the
    pretrained checkpoints of the ``init_cfg`` exist and fit (training only: testing loads all
    weights); the checkpoint to load, resume or test fits the model and is finite.

    Returns:
        The hooks the run needs, for :func:`build_runner`: a data load error names its files;
        training stops at the first non-finite loss or gradient norm (unless ``custom_hooks``
        configures ``DivergenceCheckHook`` itself); with ``load_from`` on another number of
        classes, the task heads keep their initialisation (one warning line lists them).
    """
    if mode not in RUN_MODES:
        raise ValueError(f'mode={mode!r} is not supported; allowed: {RUN_MODES}')
    use_fresh_logger()
    patterns = ignore_patterns(cfg)
    model = build_model_for_checks(cfg)
    check_feature_channels(cfg, model)
    if mode == 'train':
        with_val = cfg.get('val_cfg') is not None and cfg.get('val_dataloader') is not None
        loaders = ['train_dataloader'] + ['val_dataloader'] * with_val
        check_data(cfg, loaders, ['val_evaluator'] * with_val)
        check_pretrained_files(cfg)
        check_init_checkpoints(cfg, model)
    else:
        loaders = ['test_dataloader']
        check_data(cfg, loaders, ['test_evaluator'])
    check_head_classes(cfg, model, load_datasets(cfg, loaders))

    hooks = [dict(type='DataLoadErrorHook')]
    if mode == 'train' and not _configured(cfg, 'DivergenceCheckHook'):
        hooks.append(dict(type='DivergenceCheckHook'))
    if mode == 'test':
        checkpoint, setting = cfg.load_from, 'checkpoint'
    elif cfg.get('resume') and cfg.get('load_from') is None:
        checkpoint, setting = _latest_checkpoint(cfg.work_dir), '--resume'
        if checkpoint is None:
            warn(f'--resume: {cfg.work_dir} holds no checkpoint to resume (no last_checkpoint file): '
                 'training starts from scratch there')
    else:
        checkpoint = cfg.get('load_from')
        setting = '--resume' if cfg.get('resume') else 'load_from'
    if checkpoint is not None:
        if '://' not in checkpoint and not osp.exists(osp.expanduser(checkpoint)):
            raise ToolError(f'{setting} {checkpoint!r} does not exist (working directory {os.getcwd()})')
        if '://' not in checkpoint:
            other_classes = check_checkpoint_fits(
                model, checkpoint, patterns, setting, model_cfg=cfg.model if setting == 'load_from' else None,
                report_dir=cfg.get('work_dir'))
            if other_classes:
                ours, theirs = sorted({c[0] for c in other_classes.values()}), sorted(
                    {c[1] for c in other_classes.values()})
                warn(f'load_from {checkpoint}: {len(other_classes)} keys of the task heads are for '
                     f'{"/".join(map(str, theirs))} classes there, {"/".join(map(str, ours))} in the config, '
                     f'and keep their initialisation: {", ".join(sorted(other_classes))}')
                hooks.append(dict(type='KeepInitialisedKeysHook', keys=sorted(other_classes)))
    return hooks


def build_runner(cfg: Config, hooks: Sequence[dict] = ()) -> Runner:
    """Build the Runner the config asks for (``runner_type``) or mmengine's default one, with
    ``hooks`` (what :func:`check_before_run` returns) registered; the config itself, which the
    Runner saves in the work dir, is left as the user wrote it."""
    if cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    for hook in hooks:
        runner.register_hook(copy.deepcopy(hook))
    return runner


def _setup_cpu_distributed(cfg: Config) -> None:
    """Data-parallel training on CPUs (gloo), e.g. to try a multi-process launch without GPUs.

    mmengine's launchers pin each process to a CUDA device and give DDP ``device_ids``; neither
    exists without a GPU. The process group is made here (the Runner then keeps it) and DDP
    is built without device ids.
    """
    if cfg.launcher != 'pytorch':
        raise ToolError(f'--launcher {cfg.launcher} needs GPUs; without a GPU only --launcher pytorch '
                        '(torchrun, tools/dist_train.sh) runs, on the gloo backend')
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')
    cfg.setdefault('model_wrapper_cfg', dict(
        type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
