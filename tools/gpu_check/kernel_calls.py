"""Small calls of every mmrkan kernel (forward and backward of both ops, every dtype, odd sizes),
each checked against the PyTorch reference: the workload ``compute-sanitizer`` runs in gpu_check.

    python tools/gpu_check/kernel_calls.py --device cuda
"""
import argparse
import sys
from typing import List, Sequence

import torch

from mmrkan.ops import group_rational, kan_conv2d
from mmrkan.ops.group_rational import RATIONAL_ORDERS
from mmrkan.ops.library import has_kernel
from mmrkan.ops.reference import group_rational_reference, kan_conv2d_reference

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def check(name: str, outputs: Sequence[torch.Tensor], references: Sequence[torch.Tensor],
          dtype: torch.dtype) -> List[str]:
    """Names of outputs that are not finite or differ from the reference beyond the tolerance."""
    failures = []
    for index, (got, want) in enumerate(zip(outputs, references)):
        error = relative_error(got, want)
        if not torch.isfinite(got).all() or error > TOLERANCE[dtype]:
            failures.append(f'{name} output {index}: relative error {error:.2e}')
    return failures


def coefficient_dtype(dtype: torch.dtype) -> torch.dtype:
    """The ops' compute dtype, which their coefficients (and coefficient gradients) have."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def leaves(*tensors: torch.Tensor) -> List[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


def run_group_rational(device: torch.device, dtype: torch.dtype) -> List[str]:
    failures, weights = [], coefficient_dtype(dtype)
    # 7 x 5 rows of 40 channels in 4 groups: no size is a multiple of a block or vector width.
    # Every order (m, n), each its own kernel instantiation; shared and per-group numerators.
    for (m, n) in RATIONAL_ORDERS:
        for numerator_rows in (1, 4):
            x = torch.randn(7, 5, 40, device=device).to(dtype)
            numerator = torch.randn(numerator_rows, m + 1, device=device, dtype=weights) / 2
            denominator = torch.randn(4, n, device=device, dtype=weights) / 2
            grad_out = torch.randn_like(x)
            ours = leaves(x, numerator, denominator)
            ref = leaves(x.double(), numerator.double(), denominator.double())
            out = group_rational(*ours)
            out_ref = group_rational_reference(*ref)
            grads = torch.autograd.grad(out, ours, grad_out)
            grads_ref = torch.autograd.grad(out_ref, ref, grad_out.double())
            failures += check(f'group_rational {dtype} order {(m, n)} numerator rows '
                              f'{numerator_rows}', [out, *grads], [out_ref, *grads_ref], dtype)
    return failures


def run_kan_conv2d(device: torch.device, dtype: torch.dtype) -> List[str]:
    failures, weights = [], coefficient_dtype(dtype)
    for stride in (1, 2):
        for basis, num_functions in (('chebyshev', 4), ('rbf', 5)):
            x = torch.randn(2, 3, 9, 7, device=device).to(dtype)
            base_weight = torch.randn(9, device=device, dtype=weights) * (2 / 9)**0.5
            poly_weight = torch.randn(9, num_functions, device=device, dtype=weights) / 6
            out_size = ((9 - 1) // stride + 1, (7 - 1) // stride + 1)
            grad_out = torch.randn(2, 3, *out_size, device=device).to(dtype)
            ours = leaves(x, base_weight, poly_weight)
            ref = leaves(x.double(), base_weight.double(), poly_weight.double())
            out = kan_conv2d(*ours, stride=stride, basis=basis)
            out_ref = kan_conv2d_reference(*ref, stride=stride, basis=basis)
            grads = torch.autograd.grad(out, ours, grad_out)
            grads_ref = torch.autograd.grad(out_ref, ref, grad_out.double())
            failures += check(f'kan_conv2d {dtype} stride {stride} {basis}',
                              [out, *grads], [out_ref, *grads_ref], dtype)
    return failures


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
    torch.manual_seed(0)
    failures = []
    for dtype in DTYPES:
        failures += run_group_rational(device, dtype) + run_kan_conv2d(device, dtype)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    for failure in failures:
        print(f'MISMATCH {failure}', file=sys.stderr)
    print(f'kernel calls on {device}: {len(DTYPES)} dtypes, {"failed" if failures else "all match"}'
          ' the references')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
