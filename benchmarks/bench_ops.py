"""Benchmark of mmrkan's KAN ops against their PyTorch references and natural baselines.

For each shape it times forward and forward+backward of: our op, the plain-PyTorch reference
(``mmrkan.ops.reference``) and the baseline a non-KAN model would run on the same tensor (GELU for
the group-rational activation; a depthwise 3x3 ``conv2d`` for the KAN convolution), in one run,
and prints the ratios. On CUDA it also prints the achieved memory bandwidth (minimum bytes that
must move) as a fraction of a device-to-device copy measured in the same run. Shapes: the
group-rational activations of KAT-S and KAT-B, the KAN convolutions of RKANet-50's stage-4
branch. ``--json`` adds one JSON line with every figure.

``--families`` times instead, on the same two KAN-convolution shapes, forward+backward of every
KAN family and option of ``kan_conv2d`` next to Chebyshev (tanh) with the same number of basis
functions ``K``, in one run, and prints each one's time ratio to it (the target: within 1.5x).

Examples::

    python benchmarks/bench_ops.py --device cpu --scale 0.125 --threads 1 --clock cpu
    python benchmarks/bench_ops.py --device cpu --scale 0.125 --threads 1 --clock cpu --families
    python benchmarks/bench_ops.py --device cuda --dtype bf16 --json
"""
import argparse
import json
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F

from mmrkan.analysis.throughput import synchronize
from mmrkan.ops import group_rational, kan_conv2d
from mmrkan.ops.group_rational import DEFAULT_ORDER, RATIONAL_INITS
from mmrkan.ops.reference import group_rational_reference, kan_conv2d_reference

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def median_ms(fn: Callable[[], object],
              device: torch.device,
              warmup: int,
              repeats: int,
              clock: str = 'wall') -> float:
    """Median time of ``fn`` in milliseconds: CUDA events on CUDA; on the CPU wall time, or the
    process's CPU time (``clock='cpu'``: robust on a shared machine, meaningful with 1 thread)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            timer = time.process_time if clock == 'cpu' else time.perf_counter
            start_time = timer()
            fn()
            times.append((timer() - start_time) * 1e3)
    return statistics.median(times)


def copy_bandwidth(device: torch.device, warmup: int, repeats: int) -> float:
    """Measured device-to-device copy bandwidth in GB/s (bytes read + written)."""
    src = torch.empty(256 * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup, repeats)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


def forward_backward(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                     grad_out: torch.Tensor) -> Callable[[], object]:
    """A closure running ``fn(*inputs)`` and the gradients of every input."""
    return lambda: torch.autograd.grad(fn(*inputs), inputs, grad_out)


def bench_case(name: str, candidates: Dict[str, tuple], grad_out: torch.Tensor,
               bytes_fwd: int, bytes_fwd_bwd: int, device: torch.device, args,
               copy_gbps: float) -> Dict:
    """Prints one case and returns its figures. ``candidates``: label -> (function, inputs
    that need gradients); the labels are 'ours', 'reference' and the baseline's."""
    results = {}
    for label, (fn, inputs) in candidates.items():
        with torch.no_grad():
            fwd = median_ms(lambda: fn(*inputs), device, args.warmup, args.repeats, args.clock)
        both = median_ms(forward_backward(fn, inputs, grad_out), device, args.warmup, args.repeats,
                         args.clock)
        results[label] = (fwd, both)
    ours_fwd, ours_both = results['ours']
    base_label = [label for label in results if label not in ('ours', 'reference')][0]
    print(f'\n{name}')
    print(f'  {"":<14}{"fwd ms":>10}{"fwd+bwd ms":>12}')
    for label, (fwd, both) in results.items():
        print(f'  {label:<14}{fwd:>10.3f}{both:>12.3f}')
    ref_fwd, ref_both = results['reference']
    base_fwd, base_both = results[base_label]
    print(f'  speed-up vs reference: fwd {ref_fwd / ours_fwd:.2f}x, '
          f'fwd+bwd {ref_both / ours_both:.2f}x')
    print(f'  throughput vs {base_label}: fwd {base_fwd / ours_fwd:.2f}x, '
          f'fwd+bwd {base_both / ours_both:.2f}x (1.0 = as fast)')
    figures = dict(
        case=name, op=name.split()[0], baseline=base_label,
        ms={label: dict(fwd=round(fwd, 4), fwd_bwd=round(both, 4))
            for label, (fwd, both) in results.items()},
        vs_reference_fwd=round(ref_fwd / ours_fwd, 3),
        vs_reference_fwd_bwd=round(ref_both / ours_both, 3),
        vs_baseline_fwd=round(base_fwd / ours_fwd, 3),
        vs_baseline_fwd_bwd=round(base_both / ours_both, 3))
    if copy_gbps:
        fwd_gbps = bytes_fwd / (ours_fwd * 1e-3) / 1e9
        both_gbps = bytes_fwd_bwd / (ours_both * 1e-3) / 1e9
        print(f'  bandwidth: fwd {fwd_gbps:.0f} GB/s ({fwd_gbps / copy_gbps:.0%} of copy), '
              f'fwd+bwd {both_gbps:.0f} GB/s ({both_gbps / copy_gbps:.0%} of copy)')
        figures.update(fwd_gbps=round(fwd_gbps), fwd_bwd_gbps=round(both_gbps),
                       fwd_of_copy=round(fwd_gbps / copy_gbps, 3),
                       fwd_bwd_of_copy=round(both_gbps / copy_gbps, 3))
    return figures


def scaled_batch(batch: int, scale: float) -> int:
    return max(1, round(batch * scale))


# The RKANet-50 stage-4 KAN convolutions: (batch, channels, size, stride).
KAN_CONV_SHAPES = ((32, 512, 14, 2), (32, 2048, 7, 1))


def family_variants(num_functions: int) -> List[tuple]:
    """(label, kan_conv2d keyword arguments) of every family and option with K functions; the
    first is the reference point, Chebyshev with tanh."""
    variants = [(basis, dict(basis=basis)) for basis in ('chebyshev', 'legendre', 'jacobi',
                                                         'hermite', 'rbf')]
    order = min(3, num_functions - 1)
    variants.append((f'b_spline (order {order}, grid {num_functions - order})',
                     dict(basis='b_spline', spline_order=order)))
    variants += [(f'chebyshev {norm}', dict(basis='chebyshev', normalization=norm))
                 for norm in ('arctan', 'min-max', 'standardization')]
    variants.append(('chebyshev silu base', dict(basis='chebyshev', base_activation='silu')))
    return variants


def bench_families(device: torch.device, dtype: torch.dtype, args) -> List[Dict]:
    """Forward+backward of every family next to Chebyshev with the same K, in one run: the
    variants are timed in turn, ``--rounds`` times, and each figure is the median over the
    rounds (so that a load change on a shared machine hits every variant alike)."""
    cases = []
    for batch, channels, size, stride in KAN_CONV_SHAPES:
        x = torch.randn(scaled_batch(batch, args.scale), channels, size, size).to(device, dtype)
        x.requires_grad_()
        out_size = (size - 1) // stride + 1
        grad_out = torch.randn(x.shape[0], channels, out_size, out_size, dtype=dtype,
                               device=device)
        for num_functions in args.num_functions:
            base_weight = (torch.randn(9, device=device) * (2 / 9)**0.5).requires_grad_()
            poly_weight = (torch.randn(9, num_functions, device=device) / 6).requires_grad_()
            runs = {}
            for label, kwargs in family_variants(num_functions):
                inputs = [x, base_weight, poly_weight]
                if kwargs.get('normalization') == 'arctan':
                    inputs.append(torch.full((1, ), 0.1, device=device, requires_grad=True))

                def run(*tensors, kwargs=kwargs):
                    norm_scale = tensors[3] if len(tensors) > 3 else None
                    return kan_conv2d(*tensors[:3], stride=stride, norm_scale=norm_scale,
                                      **kwargs)

                runs[label] = (run, inputs)
            times = {label: ([], []) for label in runs}
            for _ in range(args.rounds):
                for label, (run, inputs) in runs.items():
                    with torch.no_grad():
                        times[label][0].append(
                            median_ms(lambda: run(*inputs), device, args.warmup, args.repeats,
                                      args.clock))
                    times[label][1].append(
                        median_ms(forward_backward(run, inputs, grad_out), device, args.warmup,
                                  args.repeats, args.clock))
            print(f'\nkan_conv2d families {tuple(x.shape)} stride {stride} K {num_functions} '
                  f'{args.dtype} (median of {args.rounds} rounds)')
            print(f'  {"":<36}{"fwd ms":>10}{"fwd+bwd ms":>12}{"fwd+bwd / chebyshev":>22}')
            reference = statistics.median(times['chebyshev'][1])
            for label, (fwd_times, both_times) in times.items():
                fwd, both = statistics.median(fwd_times), statistics.median(both_times)
                print(f'  {label:<36}{fwd:>10.3f}{both:>12.3f}{both / reference:>21.2f}x')
                cases.append(dict(shape=list(x.shape), stride=stride, num_functions=num_functions,
                                  variant=label, fwd_ms=round(fwd, 4), fwd_bwd_ms=round(both, 4),
                                  fwd_bwd_vs_chebyshev=round(both / reference, 3)))
    return cases


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', default='fp32', choices=tuple(DTYPES))
    parser.add_argument('--scale', type=float, default=1.0,
                        help='multiplies every batch size (e.g. 0.125 on a small CPU)')
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU threads for torch and the kernels (0: torch default)')
    parser.add_argument('--clock', default='wall', choices=('wall', 'cpu'),
                        help='CPU timing: wall time, or process CPU time (use with --threads 1 '
                        'on a shared machine)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--json', action='store_true', help='also print one JSON line')
    parser.add_argument('--families', action='store_true',
                        help='compare every KAN family and option with Chebyshev instead')
    parser.add_argument('--num-functions', type=int, nargs='+', default=[4, 6],
                        help='basis functions K per family (--families; default 4 6)')
    parser.add_argument('--rounds', type=int, default=3,
                        help='rounds over the variants, medians taken (--families; default 3)')
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f'--scale={args.scale} must be > 0')
    if args.threads < 0:
        parser.error(f'--threads={args.threads} must be >= 0')
    if any(k < 2 for k in args.num_functions):
        parser.error(f'--num-functions={args.num_functions} must all be >= 2')
    if args.rounds < 1:
        parser.error(f'--rounds={args.rounds} must be >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.manual_seed(0)
    copy_gbps = copy_bandwidth(device, args.warmup, args.repeats) if device.type == 'cuda' else 0.0
    print(f'torch {torch.__version__}, device {device} '
          f'({torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}), '
          f'threads {torch.get_num_threads()}, dtype {args.dtype}, scale {args.scale}, '
          f'clock {args.clock if device.type == "cpu" else "cuda events"}')
    if copy_gbps:
        print(f'device-to-device copy: {copy_gbps:.0f} GB/s')

    if args.families:
        cases = bench_families(device, dtype, args)
        if args.json:
            print(json.dumps(dict(torch=torch.__version__, device=str(device), dtype=args.dtype,
                                  scale=args.scale, families=cases)))
        return

    def leaf(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device).requires_grad_()

    cases = []
    # The second rational of KAT-S and of KAT-B: tokens (B, 197, 4 * embed dims), 8 groups,
    # swish init.
    for channels in (1536, 3072):
        x = leaf(torch.randn(scaled_batch(128, args.scale), 197, channels).to(dtype))
        numerator_init, denominator_init = RATIONAL_INITS[DEFAULT_ORDER]['swish']
        numerator = leaf(torch.tensor([numerator_init]))
        denominator = leaf(torch.tensor([denominator_init]).repeat(8, 1))
        element = x.element_size()
        cases.append(bench_case(
            f'group_rational {tuple(x.shape)} {args.dtype}', {
                'ours': (group_rational, (x, numerator, denominator)),
                'reference': (group_rational_reference, (x, numerator, denominator)),
                'gelu': (F.gelu, (x, )),
            },
            torch.randn_like(x),
            bytes_fwd=2 * x.numel() * element,
            bytes_fwd_bwd=5 * x.numel() * element,
            device=device,
            args=args,
            copy_gbps=copy_gbps))
        del x

    # RKANet-50 stage-4 branch: the stride-2 KAN conv on C_in / 2 and the stride-1 one on C_out.
    for batch, channels, size, stride in KAN_CONV_SHAPES:
        x = leaf(torch.randn(scaled_batch(batch, args.scale), channels, size, size).to(dtype))
        base_weight = leaf(torch.randn(9) * (2 / 9)**0.5)
        poly_weight = leaf(torch.randn(9, 4) / 6)
        depthwise_weight = leaf(torch.randn(channels, 1, 3, 3).to(dtype) * (2 / 9)**0.5)
        out_size = (size - 1) // stride + 1
        grad_out = torch.randn(x.shape[0], channels, out_size, out_size, dtype=dtype,
                               device=device)
        in_bytes, out_bytes = x.numel() * element, grad_out.numel() * element
        cases.append(bench_case(
            f'kan_conv2d {tuple(x.shape)} stride {stride} degree 3 {args.dtype}', {
                'ours': (lambda *t, s=stride: kan_conv2d(*t, stride=s),
                         (x, base_weight, poly_weight)),
                'reference': (lambda *t, s=stride: kan_conv2d_reference(*t, stride=s),
                              (x, base_weight, poly_weight)),
                'depthwise': (lambda t, w, s=stride: F.conv2d(t, w, stride=s, padding=1,
                                                              groups=channels),
                              (x, depthwise_weight)),
            },
            grad_out,
            bytes_fwd=in_bytes + out_bytes,
            bytes_fwd_bwd=2 * in_bytes + 2 * out_bytes + in_bytes,
            device=device,
            args=args,
            copy_gbps=copy_gbps))
    if args.json:
        print(json.dumps(dict(
            torch=torch.__version__,
            device=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
            dtype=args.dtype, scale=args.scale, copy_gbps=round(copy_gbps) or None,
            cases=cases)))


if __name__ == '__main__':
    main()
