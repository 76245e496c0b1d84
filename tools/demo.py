"""The embedded-default demo: train and evaluate small KAN models on generated data, on the CPU.

For each task it generates the shapes dataset if absent (under data/), trains the task's demo
config with mmengine's Runner (logs and checkpoints under work_dirs/demo/<task>/), evaluates it with
the task's stock metric, saves prediction images (PNG) and prints one summary table.

    python tools/demo.py                 # every task
    python tools/demo.py --task det      # one task only
"""
import argparse
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import mmcv
import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmrkan.testing import make_ade20k_style, make_coco_style, make_imagenet_style

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
                        help='override settings of every task config, e.g. train_cfg.max_epochs=1')
    return parser.parse_args()


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


def run_task(name: str, task: DemoTask, args: argparse.Namespace) -> dict:
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
    runner = Runner.from_cfg(cfg)
    runner.train()  # the config validates once, after the last epoch
    train_minutes = (time.time() - start) / 60
    metrics = {label: runner.message_hub.get_scalar(f'val/{key}').current() for label, key in task.metrics.items()}
    images = save_predictions(runner, osp.join(cfg.work_dir, 'predictions'), args.num_images)
    return dict(task=name, config=task.config, metrics=metrics, chance=task.chance, minutes=train_minutes,
                images=osp.dirname(images[0]) if images else '-')


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
        print(f"{result['task']}: prediction images in {result['images']}")


def main() -> None:
    args = parse_args()
    args.data_dir, args.work_dir = osp.abspath(args.data_dir), osp.abspath(args.work_dir)
    os.chdir(REPO)  # the configs' _base_ paths are relative to the checkout
    results = [run_task(name, TASKS[name], args) for name in (args.task or TASKS)]
    print_summary(results)


if __name__ == '__main__':
    main()
