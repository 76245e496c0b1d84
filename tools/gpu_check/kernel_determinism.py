"""Bitwise reproducibility of mmrkan's kernels: forward and every gradient of both ops, fp32 and
bf16, at RKAN and KAT shapes, computed under several conditions that must not change a bit.

On CUDA the launch plans depend on the shapes only (docs/ops.md), so the conditions are how the
GPU schedules the blocks: alone, alone again, and while a matrix product on another stream holds
most SMs (the blocks then start and finish in another order, and another block does the
backward's final sums). On the CPU (the rehearsal's stand-in) they are 1 and 2 threads. Prints
one JSON line: cases, and which differ.

    python tools/gpu_check/kernel_determinism.py --device cuda
"""
import argparse
import json
import sys
from typing import Callable, Dict, List, Sequence

import torch

from mmrkan.ops import group_rational, kan_conv2d
from mmrkan.ops.library import has_kernel

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
# (op, shape, settings); the CPU runs them scaled down (first dimension / 16).
CASES = [
    ('kan_conv2d', (32, 512, 14, 14), dict(stride=2, functions=4)),  # RKANet-50 stage 4
    ('kan_conv2d', (8, 256, 28, 28), dict(stride=1, functions=4)),
    ('kan_conv2d', (8, 64, 33, 47), dict(stride=2, functions=3)),
    ('group_rational', (64 * 197, 1536), dict(groups=8)),  # KAT-S MLP
    ('group_rational', (8192, 768), dict(groups=8)),  # KATDet-B
    # The KAT paper's order ablation (each order its own kernels), per-group numerators.
    ('group_rational', (64 * 197, 1536), dict(groups=8, order=(3, 2), numerator_rows=8)),
    ('group_rational', (64 * 197, 1536), dict(groups=8, order=(7, 6), numerator_rows=8)),
]


def make_call(op: str, shape: Sequence[int], settings: Dict, dtype: torch.dtype,
              device: torch.device) -> Callable[[], List[torch.Tensor]]:
    """A closure computing the op's output and the gradients of every input."""
    generator = torch.Generator(device='cpu').manual_seed(0)

    def randn(*size, scale=1.0, dt=torch.float32):
        return (torch.randn(*size, generator=generator) * scale).to(device=device, dtype=dt)

    x = randn(*shape, dt=dtype)
    if op == 'kan_conv2d':
        weights = [randn(9, scale=0.5), randn(9, settings['functions'], scale=0.3)]
        stride = settings['stride']
        fn = lambda *inputs: kan_conv2d(*inputs, stride=stride)  # noqa: E731
    else:
        m, n = settings.get('order', (5, 4))
        weights = [randn(settings.get('numerator_rows', 1), m + 1, scale=0.5),
                   randn(settings['groups'], n, scale=0.5)]
        fn = group_rational
    inputs = [t.requires_grad_() for t in [x] + weights]
    grad_out = randn(*fn(*inputs).shape, dt=dtype)

    def call() -> List[torch.Tensor]:
        out = fn(*inputs)
        return [out.detach()] + list(torch.autograd.grad(out, inputs, grad_out))

    return call


def conditions(device: torch.device) -> Dict[str, Callable[[Callable], List[torch.Tensor]]]:
    if device.type == 'cpu':
        def threads(count: int):
            def run(call):
                previous = torch.get_num_threads()
                torch.set_num_threads(count)
                try:
                    return call()
                finally:
                    torch.set_num_threads(previous)
            return run
        return {'1 thread': threads(1), '2 threads': threads(2)}

    side = torch.cuda.Stream(device)
    a = torch.randn(4096, 4096, device=device)

    def alone(call):
        result = call()
        torch.cuda.synchronize(device)
        return result

    def beside_matmul(call):
        torch.cuda.synchronize(device)
        with torch.cuda.stream(side):
            for _ in range(4):
                a @ a
        result = call()  # on the default stream, while the products run
        torch.cuda.synchronize(device)
        return result

    return {'alone': alone, 'alone again': alone, 'beside a matmul': beside_matmul}


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda', choices=('cpu', 'cuda'))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    if not has_kernel(device):
        print(f'mmrkan._ext has no {device.type} kernels: nothing to check', file=sys.stderr)
        return 1
    runs = conditions(device)
    differ, checked = [], 0
    for op, shape, settings in CASES:
        if device.type == 'cpu':
            shape = (max(1, shape[0] // 16),) + tuple(shape[1:])
        for dtype_name, dtype in DTYPES.items():
            call = make_call(op, shape, settings, dtype, device)
            results = {name: run(call) for name, run in runs.items()}
            first_name, first = next(iter(results.items()))
            for name, tensors in results.items():
                checked += 1
                for index, (a, b) in enumerate(zip(first, tensors)):
                    if not torch.equal(a, b):
                        differ.append(f'{op} {tuple(shape)} {settings} {dtype_name}: output '
                                      f'{index} {name} vs {first_name}')
    for line in differ:
        print(f'DIFFERS {line}', file=sys.stderr)
    print(json.dumps(dict(device=str(device), conditions=list(runs), runs=checked,
                          bitwise_identical=not differ, differing=len(differ))))
    return 1 if differ else 0


if __name__ == '__main__':
    sys.exit(main())
