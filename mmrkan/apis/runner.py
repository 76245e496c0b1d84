"""What tools/train.py and tools/test.py share: loading a task config, checking it, building the
Runner, and turning user errors into one clear message instead of a deep traceback."""
import copy
import functools
import os.path as osp
import sys
from typing import Callable, Iterable, List, Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmrkan.engine.checkpoint import CheckpointError
from mmrkan.registry import TASK_SCOPES

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class ToolError(Exception):
    """A problem with the user's input (config, data, checkpoint), reported without a traceback."""


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config of one of the supported tasks, with ``--cfg-options`` merged in."""
    if not osp.isfile(path):
        raise ToolError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
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


def _dataset_roots(dataset: ConfigDict) -> Iterable[str]:
    """Data roots of a dataset config, looking inside wrappers (RepeatDataset, ConcatDataset...)."""
    if 'data_root' in dataset:
        yield dataset['data_root']
    if 'dataset' in dataset:
        yield from _dataset_roots(dataset['dataset'])
    for inner in dataset.get('datasets', []):
        yield from _dataset_roots(inner)


def check_data_roots(cfg: Config, dataloaders: Iterable[str] = DATALOADERS) -> None:
    """Fail early, naming the setting, if a dataloader's ``data_root`` does not exist."""
    missing: List[str] = []
    for name in dataloaders:
        loader = cfg.get(name)
        if not loader:
            continue
        for root in _dataset_roots(loader['dataset']):
            if root and not osp.isdir(root):
                missing.append(f'{name}.dataset data_root={root!r}')
    if missing:
        raise ToolError(
            'data not found: ' + '; '.join(missing) + '. Put the dataset there (see README.md, '
            '"Using real data"), pass --cfg-options with the right data_root, or generate a small '
            'one with tools/misc/generate_data.py.')


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


def exit_on_user_error(main: Callable[[], None]) -> Callable[[], None]:
    """Run ``main``; report user errors (bad config type, missing data, bad checkpoint) in one
    line on stderr and exit with status 2, as argparse does for bad arguments."""

    @functools.wraps(main)
    def wrapped() -> None:
        try:
            main()
        except (ToolError, CheckpointError) as error:
            message = str(error)
        except KeyError as error:
            message = str(error.args[0]) if error.args else ''
            if 'registry' not in message:
                raise
            message = f'unknown type in the config: {message}'
        else:
            return
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)

    return wrapped
