"""Training and inference throughput (images/s) of the model of a config, on synthetic data.

A training step is the Runner's: data preprocessing (batch augments included), forward in loss
mode, backward and the config's optimizer step (``optim_wrapper``; an ``AmpOptimWrapper``
becomes a plain fp32 one on the CPU), at learning rate 0 so that every step sees the same
weights. An inference step is ``test_step`` (predict mode, with
post-processing) without gradients. The batch is synthetic: random images of ``--shape``, one
annotation per image (a label, a box and mask, or a label map).

Each step runs ``--warmup`` times untimed, then ``--iters`` timed times; the median images/s is
reported. With ``--compare-baseline`` the baseline model (the KAN parts replaced by what they
replace, see :mod:`mmrkan.analysis.baseline`: an RKAN backbone by the CNN it wraps, GR-KAN
mixers by GELU MLPs) is measured in the same run, the timed steps of the two models taking
turns so that a change in the machine's load affects both alike, and the ratios are printed.
The whole measurement is repeated ``--repeats`` times: the ratio printed is the median of the
repeats, with their range; when the range is wider than ``--max-spread`` of the ratio (a machine
whose load changed during the run) the tool says that the ratio is not meaningful.

Examples::

    python tools/analysis_tools/benchmark.py configs/rkan/rkanet-50_8xb32_in1k.py \\
        --device cpu --batch 8 --compare-baseline
    python tools/analysis_tools/benchmark.py configs/kat/kat-small_8xb128_in1k.py \\
        --device cuda --batch 128 --iters 20 --compare-baseline
"""
import argparse
import statistics
import sys
from typing import Callable, Dict

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper

from mmrkan.analysis import (DEFAULT_SHAPES, build_baseline, build_task_model, images_per_second,
                             synthetic_batch)
from mmrkan.apis import ToolError, exit_on_user_error, load_config, without_amp


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Training and inference throughput of a model, images/s')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--device', choices=('cpu', 'cuda'),
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int,
                        help='images per step (default: the batch size of train_dataloader)')
    parser.add_argument(
        '--shape', type=int, nargs='+', metavar=('H', 'W'),
        help='input height and width (one value: square); default: 224x224 for classifiers, '
        '512x512 for segmentors, 800x1333 for detectors')
    parser.add_argument('--iters', type=int, default=10, help='timed steps per model and mode')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps per model and mode')
    parser.add_argument('--repeats', type=int, default=3,
                        help='measure this many times; the ratio is their median, with their range')
    parser.add_argument('--max-spread', type=float, default=0.1,
                        help='a range of the repeated ratios wider than this fraction of their median '
                        'makes the ratio not meaningful (default 0.1)')
    parser.add_argument('--compare-baseline', action='store_true',
                        help='also measure the model without its KAN parts and print the ratios')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. model.backbone.arch=tiny')
    args = parser.parse_args()
    if args.shape is not None and len(args.shape) > 2:
        parser.error(f'--shape takes H [W], got {len(args.shape)} values')
    for name in ('batch', 'iters', 'repeats'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    if args.warmup < 0:
        parser.error('--warmup must be at least 0')
    if not args.max_spread > 0:
        parser.error('--max-spread must be positive')
    return args


def make_steps(model: BaseModel, cfg: Config, device: torch.device, batch_size: int,
               shape: tuple) -> Dict[str, Callable[[], None]]:
    """A training step and an inference step of ``model`` on a fixed synthetic batch."""
    model.to(device)
    optim_cfg = without_amp(cfg.optim_wrapper) if device.type == 'cpu' else cfg.optim_wrapper
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    # The step runs at learning rate 0: its cost is the same, but the model stays at its
    # initial weights. Trained on one fixed batch, it would drive the loss to zero within a few
    # steps, and the vanishing (denormal) gradients would slow the CPU steps down erratically.
    for group in optim_wrapper.optimizer.param_groups:
        group['lr'] = 0.0
    data = synthetic_batch(cfg.default_scope, batch_size, shape)

    def train() -> None:
        model.train()
        model.train_step(data, optim_wrapper)

    @torch.no_grad()
    def infer() -> None:
        model.eval()
        model.test_step(data)

    return dict(train=train, inference=infer)


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ToolError('--device cuda: no CUDA device is available')
    device = torch.device(args.device)
    scope = cfg.default_scope
    shape = DEFAULT_SHAPES[scope] if args.shape is None else (args.shape[0], args.shape[-1])
    batch_size = args.batch or cfg.train_dataloader.batch_size
    # Keep mmengine's per-parameter initialisation and optimizer reports out of the output.
    MMLogger.get_current_instance().setLevel('WARNING')

    torch.manual_seed(0)
    models = {'model': build_task_model(cfg)}
    if args.compare_baseline:
        models['baseline'] = build_baseline(cfg)
    steps = {name: make_steps(model, cfg, device, batch_size, shape)
             for name, model in models.items()}
    # repeats[mode][name]: images/s of each repeat.
    repeats = {mode: {name: [] for name in models} for mode in ('train', 'inference')}
    for repeat in range(args.repeats):
        for mode, mode_repeats in repeats.items():
            rates = images_per_second({name: model_steps[mode] for name, model_steps in steps.items()},
                                      batch_size, device, args.warmup if repeat == 0 else 0, args.iters)
            for name, rate in rates.items():
                mode_repeats[name].append(rate)

    device_name = (torch.cuda.get_device_name(device) if device.type == 'cuda' else
                   f'cpu, {torch.get_num_threads()} torch thread(s)')
    print(f'{args.config} on {device_name}: batch {batch_size}, {shape[0]}x{shape[1]}, median of '
          f'{args.iters} timed steps after {args.warmup} warm-up steps, {args.repeats} repeats')
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f'{name:>8} ({params / 1e6:.3f}M params): train {statistics.median(repeats["train"][name]):.2f} '
              f'img/s, inference {statistics.median(repeats["inference"][name]):.2f} img/s')
    if args.compare_baseline:
        for mode, mode_repeats in repeats.items():
            ratios = [m / b for m, b in zip(mode_repeats['model'], mode_repeats['baseline'])]
            ratio = statistics.median(ratios)
            spread = (max(ratios) - min(ratios)) / ratio
            print(f'{mode} throughput ratio model / baseline: {ratio:.3f} (repeats {min(ratios):.3f} to '
                  f'{max(ratios):.3f}, spread {spread:.1%})')
            if spread > args.max_spread:
                print(f'warning: the {mode} ratio varied by {spread:.1%} between repeats (more than '
                      f'--max-spread {args.max_spread:.0%}): the machine\'s load changed during the '
                      'measurement, so this ratio is not meaningful; measure on an idle machine, or with '
                      'more --iters', file=sys.stderr)


if __name__ == '__main__':
    main()
