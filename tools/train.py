"""Train a detector, segmentor or classifier from an mmrkan (or any OpenMMLab 2.x) config.

The task follows the config's ``default_scope`` (mmdet, mmseg or mmpretrain).
"""
import argparse
import importlib.util
import os

from mmengine.config import DictAction

from mmrkan.apis import (ToolError, build_runner, check_before_run, enable_debug, exit_on_user_error,
                         load_config, set_work_dir)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size (auto_scale_lr in the config)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest one in the work dir')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also write TensorBoard event files (needs the tensorboard package)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--data-root', metavar='DIR',
                        help='read the dataset from DIR: the data_root of every dataloader and the '
                        'evaluator files under the old data root move together')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of configuration and data errors (or set MMRKAN_DEBUG=1)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.debug:
        enable_debug()
    return args


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.data_root)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.work_dir, args.config)

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ToolError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.tensorboard:
        if importlib.util.find_spec('tensorboard') is None:
            raise ToolError('--tensorboard needs the tensorboard package: pip install tensorboard')
        cfg.visualizer.vis_backends = [*cfg.visualizer.get('vis_backends', []),
                                       dict(type='TensorboardVisBackend')]
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    hooks = check_before_run(cfg, 'train')
    runner = build_runner(cfg, hooks)
    runner.train()


if __name__ == '__main__':
    main()
