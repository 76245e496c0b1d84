"""Test (and evaluate) a checkpoint of a detector, segmentor or classifier.

The task follows the config's ``default_scope`` (mmdet, mmseg or mmpretrain).
"""
import argparse
import os

from mmengine.config import Config, DictAction

from mmrkan.apis import (ToolError, build_runner, check_before_run, enable_debug, exit_on_user_error,
                         load_config, set_work_dir)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump the predictions to this pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save images with predictions drawn to this dir (under the work dir)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--data-root', metavar='DIR',
                        help='read the dataset from DIR: the data_root of every dataloader and the '
                        'evaluator files under the old data root move together')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of configuration and data errors (or set MMRKAN_DEBUG=1)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.debug:
        enable_debug()
    return args


def enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    """Turn on the task's visualization hook for --show / --show-dir (each library names the
    output folder differently)."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ToolError('--show/--show-dir need a visualization hook in default_hooks')
    hook.show = args.show
    hook.wait_time = args.wait_time
    if cfg.default_scope == 'mmpretrain':
        hook.enable = True
        if args.show_dir:
            hook.out_dir = args.show_dir
    else:
        hook.draw = True
        if args.show_dir and cfg.default_scope == 'mmdet':
            hook.test_out_dir = args.show_dir  # under the run's log dir
        elif args.show_dir:
            cfg.visualizer.save_dir = args.show_dir


def add_dump_metric(cfg: Config, out_file: str) -> None:
    if not out_file.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out={out_file!r} must be a .pkl or .pickle file')
    dump = dict(type='DumpDetResults' if cfg.default_scope == 'mmdet' else 'DumpResults', out_file_path=out_file)
    evaluator = cfg.test_evaluator
    cfg.test_evaluator = [*evaluator, dump] if isinstance(evaluator, (list, tuple)) else [evaluator, dump]


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.data_root)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.work_dir, args.config)

    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.out:
        add_dump_metric(cfg, args.out)

    hooks = check_before_run(cfg, 'test')
    runner = build_runner(cfg, hooks)
    runner.test()


if __name__ == '__main__':
    main()
