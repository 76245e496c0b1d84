"""What tools/train.py and tools/test.py share: loading a task config, checking everything
that can be checked before the Runner's long set-up, and building the Runner."""
import copy
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrkan.registry import TASK_SCOPES
from .checkpoint_fit import check_checkpoint_fits, ignore_patterns
from .config_checks import (build_model_for_checks, check_cfg_option_keys, check_data,
                            check_pretrained_files, set_data_root)
from .errors import ToolError

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


def check_before_run(cfg: Config, mode: str) -> None:
    """Everything the tools can check before the Runner's set-up, in one-line errors: the
    model builds, the data of the run exists, pretrained checkpoints of the ``init_cfg`` exist
    (training only: testing loads all weights), and the checkpoint to load, resume or test
    fits the model."""
    if mode not in RUN_MODES:
        raise ValueError(f'mode={mode!r} is not supported; allowed: {RUN_MODES}')
    patterns = ignore_patterns(cfg)
    model = build_model_for_checks(cfg)
    if mode == 'train':
        with_val = cfg.get('val_cfg') is not None and cfg.get('val_dataloader') is not None
        check_data(cfg, ['train_dataloader'] + ['val_dataloader'] * with_val, ['val_evaluator'] * with_val)
        check_pretrained_files(cfg)
    else:
        check_data(cfg, ['test_dataloader'], ['test_evaluator'])

    if mode == 'test':
        checkpoint, setting = cfg.load_from, 'checkpoint'
    elif cfg.get('resume') and cfg.get('load_from') is None:
        checkpoint, setting = _latest_checkpoint(cfg.work_dir), '--resume'
    else:
        checkpoint = cfg.get('load_from')
        setting = '--resume' if cfg.get('resume') else 'load_from'
    if checkpoint is not None:
        if '://' not in checkpoint and not osp.exists(osp.expanduser(checkpoint)):
            raise ToolError(f'{setting} {checkpoint!r} does not exist (working directory {os.getcwd()})')
        if '://' not in checkpoint:
            check_checkpoint_fits(model, checkpoint, patterns, setting)


def build_runner(cfg: Config) -> Runner:
    """Build the Runner the config asks for (``runner_type``) or mmengine's default one."""
    if cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


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
