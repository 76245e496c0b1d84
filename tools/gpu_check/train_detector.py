"""A few training iterations of a Mask R-CNN config on the generated COCO-style shapes data.

Keeps the config's model, pipeline and optimizer (no pretrained weights); trains on one batch of
images repeated, with fp16 AMP (mmengine's ``AmpOptimWrapper``, dynamic loss scale) on CUDA and
fp32 on the CPU, and a linear learning-rate warm-up over the first quarter of the iterations (the
configs' own warm-up is hundreds of iterations long). Writes one JSON file: every iteration's
loss, the iterations the loss scaler skipped, peak GPU memory, and whether the run passed: losses
finite, the mean of the last quarter below the mean of the first quarter (required with
``--require-falling``), no skipped step after the first quarter.

    python tools/gpu_check/train_detector.py \
        configs/katdet/mask-rcnn_katdet-small_simplefpn_3x_coco.py \
        --data-root /tmp/coco --device cuda --iters 40 --json result.json
"""
import argparse
import json
import math
import os.path as osp
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmrkan.testing.configs import tiny_training_config


def amp_optim_wrapper(optim_wrapper: dict) -> dict:
    """The config's optimizer under mmengine's fp16 ``AmpOptimWrapper`` with a dynamic scale."""
    optim_wrapper = dict(optim_wrapper)
    optim_wrapper.update(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
    return optim_wrapper


def summarize(losses: List[float], skipped: List[int], require_falling: bool) -> Dict:
    """Pass/fail of a run from its per-iteration losses and skipped (inf/NaN gradient) steps."""
    quarter = max(1, len(losses) // 4)
    finite = all(math.isfinite(v) for v in losses)
    first = sum(losses[:quarter]) / quarter
    last = sum(losses[-quarter:]) / quarter
    late_skips = [i for i in skipped if i >= quarter]
    problems = []
    if not finite:
        problems.append('non-finite losses at iterations '
                        f'{[i for i, v in enumerate(losses) if not math.isfinite(v)]}')
    falling = finite and last < first
    if require_falling and not falling:
        problems.append(f'loss not falling: first-quarter mean {first:.4f}, last-quarter mean '
                        f'{last:.4f}')
    if late_skips:
        problems.append(f'the loss scaler skipped steps after the first {quarter} iterations: '
                        f'{late_skips}')
    return dict(finite=finite, falling=falling, first_quarter_mean=first,
                last_quarter_mean=last, late_skipped_steps=late_skips, problems=problems,
                passed=not problems)


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--data-root', required=True, help='generated COCO-style root')
    parser.add_argument('--device', default='cuda', choices=('cpu', 'cuda'))
    parser.add_argument('--iters', type=int, default=40)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--min-side', type=int, default=0,
                        help='shrink the pipeline image sizes to this shorter side (0: keep)')
    parser.add_argument('--require-falling', action='store_true')
    parser.add_argument('--json', required=True, help='result file')
    args = parser.parse_args(argv)
    if args.iters < 4:
        parser.error(f'--iters={args.iters} must be >= 4 (losses are compared by quarters)')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    device = torch.device(args.device)
    amp = device.type == 'cuda'

    cfg = Config.fromfile(args.config)
    optim_wrapper_cfg = amp_optim_wrapper(cfg.optim_wrapper) if amp else None
    cfg = tiny_training_config(cfg, dict(coco=args.data_root), tempfile.mkdtemp(),
                               batch_size=args.batch, min_side=args.min_side or 10**6)
    init_default_scope(cfg.default_scope)
    import mmrkan  # noqa: F401  (registers the backbones before the model is built)
    from mmdet.registry import DATASETS, MODELS

    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    optim_wrapper = build_optim_wrapper(model, optim_wrapper_cfg or cfg.optim_wrapper)
    base_lrs = [group['lr'] for group in optim_wrapper.param_groups]
    warmup = max(1, args.iters // 4)
    batch = pseudo_collate([dataset[i % len(dataset)] for i in range(args.batch)])

    if amp:
        torch.cuda.reset_peak_memory_stats(device)
    losses, skipped, start = [], [], time.perf_counter()
    for iteration in range(args.iters):
        factor = min(1.0, (iteration + 1) / warmup)
        for group, base_lr in zip(optim_wrapper.param_groups, base_lrs):
            group['lr'] = base_lr * factor
        scale = optim_wrapper.loss_scaler.get_scale() if amp else None
        log_vars = model.train_step(batch, optim_wrapper)
        losses.append(float(log_vars['loss']))
        if amp and optim_wrapper.loss_scaler.get_scale() < scale:
            skipped.append(iteration)
        print(f'iter {iteration}: loss {losses[-1]:.4f}' +
              (f' (step skipped, loss scale {scale:g})' if skipped and skipped[-1] == iteration
               else ''), flush=True)
    if amp:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start

    result = dict(
        config=args.config, device=torch.cuda.get_device_name(device) if amp else 'cpu',
        torch=torch.__version__, amp='fp16' if amp else 'none (fp32 on the CPU)',
        iters=args.iters, batch=args.batch, image_min_side=args.min_side or 'config',
        seconds_per_iter=round(seconds / args.iters, 4), losses=[round(v, 5) for v in losses],
        skipped_steps=skipped,
        peak_memory_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if amp else None,
        **summarize(losses, skipped, args.require_falling))
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    print(f"{osp.basename(args.config)}: {'passed' if result['passed'] else 'FAILED'}; loss "
          f"{result['first_quarter_mean']:.3f} -> {result['last_quarter_mean']:.3f}, "
          f"{len(skipped)} skipped steps, {result['seconds_per_iter']} s/iter" +
          (f", peak {result['peak_memory_gib']} GiB" if amp else ''))
    for problem in result['problems']:
        print(f'PROBLEM: {problem}', file=sys.stderr)
    return 0 if result['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
