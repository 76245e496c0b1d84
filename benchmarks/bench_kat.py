"""Training-step throughput of KAT against the same-size DeiT.

The two classifiers are identical except for the channel mixer: mmpretrain's ``VisionTransformer``
(DeiT arch, MLP with GELU) and mmrkan's ``KAT`` (GR-KAN), each with a linear head on the class
token, same patch embedding, attention, norms and drop path. One training step is forward,
cross-entropy, backward and an AdamW update on random images and labels. Both models run in one
process, their timed steps alternating, and the ratio KAT / DeiT of images per second is printed
(and, with ``--json``, one JSON line, with each model's peak GPU memory). ``--fit-batch`` halves
the batch until a step fits in GPU memory, so a large ``--batch`` can fill the chip.

Examples::

    python benchmarks/bench_kat.py --device cpu --arch tiny --batch 8
    python benchmarks/bench_kat.py --device cuda --arch small --batch 1024 --amp bf16 --fit-batch
"""
import argparse
import json
from typing import Callable, Dict, Optional

import torch
from mmpretrain.models.backbones import VisionTransformer
from torch import nn

from bench_common import largest_fitting_batch, peak_memory_gib
from mmrkan.analysis.throughput import images_per_second
from mmrkan.models.backbones import KAT
from mmrkan.ops.library import has_kernel

AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Classifier(nn.Module):
    """A backbone whose class-token output feeds a linear head."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dims, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)[-1])


def build_models(arch: str, img_size: int, drop_path_rate: float) -> Dict[str, nn.Module]:
    common = dict(img_size=img_size, drop_path_rate=drop_path_rate)
    return {
        'deit': Classifier(VisionTransformer(arch=f'deit-{arch}', **common), 1000),
        'kat': Classifier(KAT(arch=arch, **common), 1000),
    }


def make_step(model: nn.Module, device: torch.device, batch: int, img_size: int,
              amp_dtype: Optional[torch.dtype]) -> Callable[[], None]:
    """One training step of ``model`` on fixed random images and labels."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    labels = torch.randint(0, 1000, (batch, ), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = nn.functional.cross_entropy(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--arch', default='small', choices=('tiny', 'small', 'base'))
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--amp', default='none', choices=tuple(AMP_DTYPES),
                        help='autocast dtype (none: fp32)')
    parser.add_argument('--drop-path', type=float, default=0.1)
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps per model')
    parser.add_argument('--steps', type=int, default=10, help='timed steps per model')
    parser.add_argument('--json', action='store_true', help='also print one JSON line')
    parser.add_argument('--fit-batch', action='store_true',
                        help='on CUDA out-of-memory, halve --batch and retry')
    args = parser.parse_args()
    if args.batch < 1:
        parser.error(f'--batch={args.batch} must be >= 1')
    return args


def measure(args: argparse.Namespace, device: torch.device, batch: int) -> Dict[str, Dict]:
    """Images/s and peak memory of each model's training step at ``batch``."""
    torch.manual_seed(0)
    steps = {
        name: make_step(model, device, batch, args.img_size, AMP_DTYPES[args.amp])
        for name, model in build_models(args.arch, args.img_size, args.drop_path).items()
    }
    rates = images_per_second(steps, batch, device, args.warmup, args.steps)
    return dict(rates=rates, peaks=peak_memory_gib(steps, device))


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    batch, measured = largest_fitting_batch(lambda b: measure(args, device, b), args.batch,
                                            args.fit_batch)
    rates, peaks = measured['rates'], measured['peaks']
    result = dict(
        device=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
        torch=torch.__version__,
        group_rational='compiled kernel' if has_kernel(device) else 'PyTorch reference',
        arch=args.arch,
        batch=batch,
        img_size=args.img_size,
        amp=args.amp,
        deit_img_per_s=round(rates['deit'], 2),
        kat_img_per_s=round(rates['kat'], 2),
        kat_over_deit=round(rates['kat'] / rates['deit'], 3),
        deit_peak_memory_gib=peaks['deit'],
        kat_peak_memory_gib=peaks['kat'])
    print(f"{args.arch} batch {batch} {args.img_size}px amp={args.amp} on "
          f"{result['device']} (group-rational: {result['group_rational']}): DeiT "
          f"{result['deit_img_per_s']} img/s, KAT {result['kat_img_per_s']} img/s, KAT/DeiT "
          f"{result['kat_over_deit']}")
    if args.json:
        print(json.dumps(result))


if __name__ == '__main__':
    main()
