"""The embedded-default demo: train and evaluate small KAN models on generated data, on the CPU.

For each task it generates the shapes dataset if absent (under data/), trains the task's demo
config with mmengine's Runner (checkpoints and the full log under work_dirs/demo/<task>/), evaluates
it with the task's stock metric, saves prediction images (PNG) and prints one summary table. On
screen each task shows one progress bar (iterations, ETA, current loss); ``--verbose`` prints
mmengine's log instead. The demo configs are seeded: the same command on the same machine gives
the same metrics.

    python tools/demo.py                 # every task
    python tools/demo.py --task det      # one task only
"""
import argparse
import contextlib
import io
import logging
import os
import os.path as osp
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

# mmengine and mmcv import pkg_resources, which they need; setuptools 81 (the last release with it)
# warns about that at every import: a dozen lines before the first progress bar, none of them ours.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,  # noqa: E402
                           TimeElapsedColumn, TimeRemainingColumn)

from mmrkan.testing import make_ade20k_style, make_coco_style, make_imagenet_style  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@dataclass
class DemoTask:
    config: str
    make_data: Callable[..., str]
    data_dir: str  # under --data-dir
    data_kwargs: dict
    metrics: Dict[str, str]  # printed name -> key the evaluator logs
    chance: str
    images: List[str] = field(default_factory=list)


TASKS = {
    'det': DemoTask(
        config='configs/demo/mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py', make_data=make_coco_style,
        data_dir='shapes_coco', data_kwargs=dict(num_train=160, num_val=32, image_size=(128, 128)),
        metrics={'bbox mAP@0.5': 'coco/bbox_mAP_50', 'bbox mAP': 'coco/bbox_mAP', 'segm mAP': 'coco/segm_mAP'},
        chance='~0'),
    'seg': DemoTask(
        config='configs/demo/upernet_kat-micro_shapes-ade20k-128x128.py', make_data=make_ade20k_style,
        data_dir='shapes_ade20k', data_kwargs=dict(num_train=160, num_val=32, image_size=(128, 128)),
        metrics={'mIoU (%)': 'mIoU'}, chance='~25'),
    'cls': DemoTask(
        config='configs/demo/kat-micro_shapes-imagenet-64px.py', make_data=make_imagenet_style,
        data_dir='shapes_imagenet',
        data_kwargs=dict(num_train_per_class=120, num_val_per_class=30, image_size=(64, 64)),
        metrics={'top-1 (%)': 'accuracy/top1'}, chance='33.3'),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=sorted(TASKS), action='append',
                        help='run only this task (repeatable); default: all')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where logs, checkpoints and images go')
    parser.add_argument('--data-dir', default='data', help='where the generated datasets are (made if absent)')
    parser.add_argument('--num-images', type=int, default=8, help='prediction images to save per task')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of every task config, e.g. train_cfg.max_epochs=1 '
                        'or randomness.seed=1')
    parser.add_argument('--verbose', action='store_true',
                        help="print mmengine's log on screen instead of the progress bars")
    return parser.parse_args()


class QuietRunner(Runner):
    """mmengine's Runner with its log going only to the work dir's log file, not to the screen."""

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.FileHandler):  # the console handler
                logger.removeHandler(handler)
        return logger


class StrayOutput(io.TextIOBase):
    """Where stdout and stderr go while a quiet task runs: what libraries print directly
    (pycocotools' evaluation tables, Python warnings) goes into the Runner's log file too, after
    the lines printed before that file was opened."""

    def __init__(self) -> None:
        self._pending: List[str] = []
        self._log_file: Optional[io.TextIOBase] = None

    def attach(self, logger: MMLogger) -> None:
        self._log_file = next(handler.stream for handler in logger.handlers
                              if isinstance(handler, logging.FileHandler))
        self._log_file.write(''.join(self._pending))
        self._pending.clear()

    def write(self, text: str) -> int:
        if self._log_file is None:
            self._pending.append(text)
        else:
            self._log_file.write(text)
        return len(text)

    def flush(self) -> None:
        if self._log_file is not None:
            self._log_file.flush()


class ProgressBarHook(Hook):
    """Advances a task's progress bar on every training iteration, with the current loss, and
    counts the evaluation batches in its status text."""

    priority = 'VERY_LOW'

    def __init__(self, progress: Progress, bar: TaskID) -> None:
        self.progress, self.bar = progress, bar
        self._val_batches = 0

    def before_train(self, runner: Runner) -> None:
        self.progress.update(self.bar, total=runner.train_loop.max_iters, status='training')

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.progress.update(self.bar, advance=1, status=f"loss {float(outputs['loss']):.4f}")

    def before_val_epoch(self, runner: Runner) -> None:
        self._val_batches = len(runner.val_dataloader)

    def after_val_iter(self, runner: Runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.progress.update(self.bar, status=f'evaluating {batch_idx + 1}/{self._val_batches}')


def new_progress(console: Console) -> Progress:
    # The bars write to the real terminal; the library output is redirected by quiet_output().
    return Progress(TextColumn('{task.description:<4}'), BarColumn(), MofNCompleteColumn(), TextColumn('iters'),
                    TimeElapsedColumn(), TextColumn('eta'), TimeRemainingColumn(), TextColumn('{task.fields[status]}'),
                    console=console, redirect_stdout=False, redirect_stderr=False)


@contextlib.contextmanager
def quiet_output(stray: StrayOutput) -> Iterator[None]:
    with contextlib.redirect_stdout(stray), contextlib.redirect_stderr(stray):
        yield


def save_predictions(runner: Runner, out_dir: str, num_images: int) -> List[str]:
    """Draw the trained model's predictions over validation images; returns the PNG paths."""
    os.makedirs(out_dir, exist_ok=True)
    visualizer = runner.visualizer
    visualizer.dataset_meta = runner.val_dataloader.dataset.metainfo
    runner.model.eval()
    saved: List[str] = []
    for batch in runner.val_dataloader:
        with torch.no_grad():
            samples = runner.model.val_step(batch)
        for sample in samples:
            image = mmcv.imread(sample.img_path, channel_order='rgb')
            out_file = osp.join(out_dir, osp.splitext(osp.basename(sample.img_path))[0] + '.png')
            if hasattr(visualizer, 'visualize_cls'):
                visualizer.visualize_cls(image, sample, draw_gt=True, resize=256, out_file=out_file)
            else:
                visualizer.add_datasample(osp.basename(out_file), image, sample, draw_gt=False, out_file=out_file)
            saved.append(out_file)
            if len(saved) == num_images:
                return saved
    return saved


def run_task(name: str, task: DemoTask, args: argparse.Namespace, console: Console) -> dict:
    data_root = osp.join(args.data_dir, task.data_dir)
    if not osp.isdir(data_root):
        print(f'[demo] generating the {name} data in {data_root}', flush=True)
        task.make_data(data_root, **task.data_kwargs)
    cfg = Config.fromfile(osp.join(REPO, task.config))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        if 'ann_file' in cfg[evaluator]:  # COCO evaluation reads the ground truth itself
            cfg[evaluator].ann_file = osp.join(data_root, 'annotations', 'instances_val2017.json')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = osp.join(args.work_dir, name)
    start = time.time()
    if args.verbose:
        runner, output = Runner.from_cfg(cfg), contextlib.nullcontext()
        runner.train()  # the config validates once, after the last epoch
    else:
        runner, stray = train_quietly(name, cfg, console)
        output = quiet_output(stray)
    train_minutes = (time.time() - start) / 60
    metrics = {label: runner.message_hub.get_scalar(f'val/{key}').current() for label, key in task.metrics.items()}
    with output:
        images = save_predictions(runner, osp.join(cfg.work_dir, 'predictions'), args.num_images)
    log_file = osp.join(runner.log_dir, f'{runner.timestamp}.log')
    return dict(task=name, config=task.config, metrics=metrics, chance=task.chance, minutes=train_minutes,
                images=osp.dirname(images[0]) if images else '-', log=shown_path(log_file))


def shown_path(path: str) -> str:
    """``path`` relative to the checkout when inside it (the default work dir), else absolute."""
    return osp.relpath(path, REPO) if path.startswith(REPO + os.sep) else path


def train_quietly(name: str, cfg: Config, console: Console) -> Tuple[Runner, StrayOutput]:
    """Train (and validate) with one progress bar on screen and everything else in the log file;
    returns the Runner and where its stray output goes."""
    stray = StrayOutput()
    with new_progress(console) as progress:
        bar = progress.add_task(name, total=None, status='building the model and data')
        runner = None
        try:
            with quiet_output(stray):
                runner = QuietRunner.from_cfg(cfg)
                stray.attach(runner.logger)
                runner.register_hook(ProgressBarHook(progress, bar))
                runner.train()  # the config validates once, after the last epoch
        except BaseException:
            progress.update(bar, status='failed')
            where = runner.log_dir if runner is not None else cfg.work_dir
            console.print(f'[demo] {name} failed; the full log is in {shown_path(where)}', markup=False)
            raise
        finally:
            stray.flush()
        progress.update(bar, status='done')
    return runner, stray


def print_summary(results: List[dict]) -> None:
    rows = [('task', 'metric', 'value', 'chance', 'minutes', 'config')]
    for result in results:
        for index, (label, value) in enumerate(result['metrics'].items()):
            first = index == 0
            rows.append((result['task'] if first else '', label, f'{value:.3f}', result['chance'] if first else '',
                         f"{result['minutes']:.1f}" if first else '', result['config'] if first else ''))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    line = '+'.join('-' * (w + 2) for w in widths)
    print('\n' + line)
    for index, row in enumerate(rows):
        print('|'.join(f' {cell:<{w}} ' for cell, w in zip(row, widths)))
        if index == 0:
            print(line)
    print(line)
    for result in results:
        print(f"{result['task']}: prediction images in {result['images']}, log in {result['log']}")


def main() -> None:
    args = parse_args()
    args.data_dir, args.work_dir = osp.abspath(args.data_dir), osp.abspath(args.work_dir)
    os.chdir(REPO)  # the configs' _base_ paths are relative to the checkout
    console = Console(file=sys.stdout)
    results = [run_task(name, TASKS[name], args, console) for name in (args.task or TASKS)]
    print_summary(results)


if __name__ == '__main__':
    main()
