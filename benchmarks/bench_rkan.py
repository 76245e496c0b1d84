"""Training-step throughput (images/s) of the RKANet-50 and ResNet-50 ImageNet classifiers.

Both models come from their configs (configs/rkan/rkanet-50_8xb32_in1k.py and mmpretrain's
resnet/resnet50_8xb32_in1k.py) and train on the same random batch in one run, taking turns
step by step: forward, cross-entropy, backward and an SGD step; each model's figure is the
median over its timed steps. The paper reports 943 vs 1216 img/s (0.78x) for the authors'
implementation on a GPU.

    python benchmarks/bench_rkan.py --device cpu --batch 8 --size 224
    python benchmarks/bench_rkan.py --device cuda --batch 64 --amp
"""
import argparse
import os.path as osp
from typing import Callable

import mmpretrain
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import mmrkan  # noqa: F401  (registers RKAN)
from mmrkan.analysis.throughput import images_per_second

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RKANET50_CONFIG = osp.join(REPO, 'configs', 'rkan', 'rkanet-50_8xb32_in1k.py')
RESNET50_CONFIG = osp.join(
    osp.dirname(mmpretrain.__file__), '.mim', 'configs', 'resnet', 'resnet50_8xb32_in1k.py')


def build_classifier(config: str) -> torch.nn.Module:
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def make_train_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    amp: bool) -> Callable[[], None]:
    """One full training step of ``model`` on the fixed batch."""
    device = images.device.type
    model.to(images.device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    scaler = torch.amp.GradScaler(device, enabled=amp)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=amp):
            logits = model.head(model.extract_feat(images))
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--batch', type=int, default=8, help='images per training step')
    parser.add_argument('--size', type=int, default=224, help='image side in pixels')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per model')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps per model')
    parser.add_argument('--amp', action='store_true', help='fp16 autocast (CUDA only)')
    args = parser.parse_args()
    if args.amp and args.device != 'cuda':
        parser.error('--amp needs --device cuda')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    # Keep mmengine's per-parameter initialisation report out of the output.
    MMLogger.get_instance('bench_rkan', log_level='WARNING')

    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    labels = torch.randint(0, 1000, (args.batch, ), device=args.device)
    steps = {
        name: make_train_step(build_classifier(config), images, labels, args.amp)
        for name, config in (('ResNet-50', RESNET50_CONFIG), ('RKANet-50', RKANET50_CONFIG))
    }
    throughput = images_per_second(steps, args.batch, torch.device(args.device), args.warmup,
                                   args.steps)

    device_name = (torch.cuda.get_device_name() if args.device == 'cuda' else
                   f'cpu ({torch.get_num_threads()} threads)')
    print(f'device {device_name}, batch {args.batch}, size {args.size}, amp {args.amp}, '
          f'{args.steps} timed steps per model after {args.warmup} warm-up steps')
    for name, value in throughput.items():
        print(f'{name}: {value:.2f} img/s')
    print('RKANet-50 / ResNet-50 training throughput ratio: '
          f'{throughput["RKANet-50"] / throughput["ResNet-50"]:.3f}')


if __name__ == '__main__':
    main()
