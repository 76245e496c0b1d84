"""Training-step throughput (images/s) of the RKANet-50 and ResNet-50 ImageNet classifiers.

Both models come from their configs (configs/rkan/rkanet-50_8xb32_in1k.py and mmpretrain's
resnet/resnet50_8xb32_in1k.py) and train on the same random batch in one run, taking turns
step by step: forward, cross-entropy, backward and an SGD step; each model's figure is the
median over its timed steps. The paper reports 943 vs 1216 img/s (0.78x) for the authors'
implementation on a GPU. ``--json`` adds one JSON line (with each model's peak GPU memory);
``--fit-batch`` halves the batch until a step fits in GPU memory.

    python benchmarks/bench_rkan.py --device cpu --batch 8 --size 224
    python benchmarks/bench_rkan.py --device cuda --batch 64 --amp
    python benchmarks/bench_rkan.py --device cuda --batch 512 --amp bf16 --fit-batch --json
"""
import argparse
import json
import os.path as osp
from typing import Callable, Dict, Optional

import mmpretrain
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import mmrkan  # noqa: F401  (registers RKAN)
from bench_common import largest_fitting_batch, peak_memory_gib
from mmrkan.analysis.throughput import images_per_second

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RKANET50_CONFIG = osp.join(REPO, 'configs', 'rkan', 'rkanet-50_8xb32_in1k.py')
AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
RESNET50_CONFIG = osp.join(
    osp.dirname(mmpretrain.__file__), '.mim', 'configs', 'resnet', 'resnet50_8xb32_in1k.py')


def build_classifier(config: str) -> torch.nn.Module:
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def make_train_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    amp_dtype: Optional[torch.dtype]) -> Callable[[], None]:
    """One full training step of ``model`` on the fixed batch (autocast to ``amp_dtype``)."""
    device = images.device.type
    model.to(images.device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model.head(model.extract_feat(images))
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def measure(args: argparse.Namespace, batch: int) -> Dict[str, Dict]:
    """Images/s and peak memory of both models' training steps at ``batch``."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, args.size, args.size, device=args.device)
    labels = torch.randint(0, 1000, (batch, ), device=args.device)
    steps = {
        name: make_train_step(build_classifier(config), images, labels, AMP_DTYPES.get(args.amp))
        for name, config in (('ResNet-50', RESNET50_CONFIG), ('RKANet-50', RKANET50_CONFIG))
    }
    device = torch.device(args.device)
    rates = images_per_second(steps, batch, device, args.warmup, args.steps)
    return dict(rates=rates, peaks=peak_memory_gib(steps, device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--batch', type=int, default=8, help='images per training step')
    parser.add_argument('--size', type=int, default=224, help='image side in pixels')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per model')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps per model')
    parser.add_argument('--amp', nargs='?', const='fp16', default=None, choices=tuple(AMP_DTYPES),
                        help='autocast dtype: fp16 (CUDA only; the default of a bare --amp) or '
                        'bf16')
    parser.add_argument('--fit-batch', action='store_true',
                        help='on CUDA out-of-memory, halve --batch and retry')
    parser.add_argument('--json', action='store_true', help='also print one JSON line')
    args = parser.parse_args()
    if args.amp == 'fp16' and args.device != 'cuda':
        parser.error('--amp fp16 needs --device cuda (use --amp bf16 on the CPU)')
    if args.batch < 1:
        parser.error(f'--batch={args.batch} must be >= 1')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    # Keep mmengine's per-parameter initialisation report out of the output.
    MMLogger.get_instance('bench_rkan', log_level='WARNING')

    batch, measured = largest_fitting_batch(lambda b: measure(args, b), args.batch,
                                            args.fit_batch)
    throughput, peaks = measured['rates'], measured['peaks']

    device_name = (torch.cuda.get_device_name() if args.device == 'cuda' else
                   f'cpu ({torch.get_num_threads()} threads)')
    print(f'device {device_name}, batch {batch}, size {args.size}, amp {args.amp or "none"}, '
          f'{args.steps} timed steps per model after {args.warmup} warm-up steps')
    for name, value in throughput.items():
        print(f'{name}: {value:.2f} img/s' +
              (f', peak memory {peaks[name]} GiB' if peaks[name] is not None else ''))
    ratio = throughput['RKANet-50'] / throughput['ResNet-50']
    if args.json:
        print(json.dumps(dict(
            device=device_name, torch=torch.__version__, batch=batch, size=args.size,
            amp=args.amp or 'none', resnet50_img_per_s=round(throughput['ResNet-50'], 2),
            rkanet50_img_per_s=round(throughput['RKANet-50'], 2),
            rkanet_over_resnet=round(ratio, 3), resnet50_peak_memory_gib=peaks['ResNet-50'],
            rkanet50_peak_memory_gib=peaks['RKANet-50'])))
    print(f'RKANet-50 / ResNet-50 training throughput ratio: {ratio:.3f}')


if __name__ == '__main__':
    main()
