"""group_rational's CUDA kernels run on the SIMT emulator, against the PyTorch reference.

Every test runs the real CUDA launcher (dtype dispatch, vector width, launch plan) and kernels
(the backward with its coefficient reduction in one launch), compiled for the emulator
(mmrkan.testing.cuda_emulation), on the emulated H200 (blocks in index order) and 2-SM GPU
(blocks in a shuffled order): the plans depend on the shapes only, so the bits must be the same.
Every rational order the op takes is a kernel instantiation of its own, and each is tested.
"""
import dataclasses

import pytest
import torch

from mmrkan.ops.group_rational import DEFAULT_ORDER, RATIONAL_ORDERS
from mmrkan.ops.reference import group_rational_reference
from mmrkan.testing import cuda_emulation as emu

GPUS = pytest.mark.parametrize('gpu', emu.GPUS, ids=lambda gpu: gpu.name)
GROUPS = 2
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
          'fp64': torch.float64}
# Coefficient gradients are fp32 sums of thousands of (fp16/bf16-rounded) terms, in another order
# than autograd's; the backward's 1 / Q is rcp.approx (1 ulp) in fp32.
GRAD_TOLERANCES = {torch.float32: dict(rtol=1e-4, atol=1e-4),
                   torch.float16: dict(rtol=1e-3, atol=1e-3),
                   torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
                   torch.float64: dict(rtol=1e-12, atol=1e-12)}


def make_inputs(rows, channels, numerator_rows, dtype, storage_offset=0, seed=0,
                groups=GROUPS, order=DEFAULT_ORDER):
    m, n = order
    generator = torch.Generator().manual_seed(seed)
    coeff_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    values = torch.randn(rows * channels + storage_offset, generator=generator).to(dtype)
    x = values[storage_offset:].view(rows, channels)
    numerator = (torch.randn(numerator_rows, m + 1, generator=generator) * 0.5).to(coeff_dtype)
    denominator = (torch.randn(groups, n, generator=generator) * 0.5).to(coeff_dtype)
    grad_out = torch.randn(rows, channels, generator=generator).to(dtype)
    return x, numerator, denominator, grad_out


def reference_grads(x, numerator, denominator, grad_out):
    inputs = [t.detach().clone().requires_grad_() for t in (x, numerator, denominator)]
    return torch.autograd.grad(group_rational_reference(*inputs), inputs, grad_out)


def check_against_reference(x, numerator, denominator, grad_out, gpu, vector):
    plan = emu.group_rational_plan(x, numerator, denominator)
    assert plan['vec'] == (16 // x.element_size() if vector else 1)
    emu.clear_launch_log()
    y = emu.group_rational_forward(x, numerator, denominator, gpu)
    grads = emu.group_rational_backward(grad_out, x, numerator, denominator, gpu)
    # One launch each: the backward's coefficient reduction is in the same launch.
    grids = [tuple(entry['grid'][:2]) for entry in emu.launch_log()]
    assert grids == [(plan['grid_x'], plan['grid_y'])] * 2

    torch.testing.assert_close(y, group_rational_reference(x, numerator, denominator))
    want = reference_grads(x, numerator, denominator, grad_out)
    for name, got, expected in zip(('x', 'numerator', 'denominator'), grads, want):
        tolerances = GRAD_TOLERANCES[x.dtype] if name != 'x' else {}
        torch.testing.assert_close(got, expected, msg=lambda m, n=name: f'grad {n}: {m}',
                                   **tolerances)
    return plan


# (path, channels, numerator rows, storage offset): the vectorised path needs C / g a multiple
# of the 16-byte vector (8 fp16, 4 fp32, 2 fp64) and 16-byte aligned pointers.
CASES = {
    'vector-shared': (True, 32, 1, 0),
    'scalar-per_group': (False, 2 * 5, GROUPS, 0),
    'misaligned-shared': (False, 32, 1, 1),
}
EXTRA_FP32_CASES = {
    'vector-per_group': (True, 32, GROUPS, 0),
    'scalar-shared': (False, 2 * 3, 1, 0),
}
PARAMS = [(dtype, case) for dtype in DTYPES for case in CASES]
PARAMS += [('fp32', case) for case in EXTRA_FP32_CASES]


def order_id(value):
    """'5_4' for the order (5, 4); pytest's own ids for the other parameters."""
    return '%d_%d' % value if isinstance(value, tuple) else None


ORDERS = pytest.mark.parametrize('order', RATIONAL_ORDERS, ids=order_id)


@GPUS
@ORDERS
@pytest.mark.parametrize('dtype,case', PARAMS)
def test_group_rational_emulated_matches_reference(dtype, case, order, gpu):
    vector, channels, numerator_rows, offset = {**CASES, **EXTRA_FP32_CASES}[case]
    inputs = make_inputs(15, channels, numerator_rows, DTYPES[dtype], storage_offset=offset,
                         order=order)
    check_against_reference(*inputs, gpu, vector)


@GPUS
@pytest.mark.parametrize('dtype,order', [(dtype, DEFAULT_ORDER) for dtype in DTYPES] +
                         [('fp32', order) for order in RATIONAL_ORDERS if order != DEFAULT_ORDER],
                         ids=order_id)
def test_group_rational_emulated_several_blocks_per_group(dtype, order, gpu):
    """700 rows: several row chunks per group, a partly filled last chunk, odd group width."""
    inputs = make_inputs(700, 2 * 24, GROUPS, DTYPES[dtype], order=order)
    plan = check_against_reference(*inputs, gpu, vector=True)
    assert plan['grid_y'] > 1 and plan['grid_y'] * plan['chunk_rows'] > 700


def test_group_rational_emulated_wide_groups_split_into_slices():
    """A group wider than a block: several blocks across its columns, summed by the last one."""
    inputs = make_inputs(9, 2 * 4 * 300, 1, torch.float32)
    plan = check_against_reference(*inputs, emu.SMALL_GPU, vector=True)
    assert plan['slices'] > 1


@pytest.mark.parametrize('dtype,numerator_rows,order',
                         [(dtype, rows, DEFAULT_ORDER) for dtype in ('fp32', 'bf16')
                          for rows in (1, GROUPS)] +
                         [('bf16', GROUPS, order) for order in RATIONAL_ORDERS
                          if order != DEFAULT_ORDER], ids=order_id)
def test_group_rational_emulated_bitwise_identical_across_gpus(dtype, numerator_rows, order):
    """Forward and every gradient: the same bits on the H200, the 2-SM GPU and two more block
    orders (another block sums the partials each time)."""
    x, numerator, denominator, grad_out = make_inputs(700, 48, numerator_rows, DTYPES[dtype],
                                                      order=order)
    assert emu.group_rational_plan(x, numerator, denominator)['num_blocks'] > 2
    gpus = list(emu.GPUS) + [dataclasses.replace(emu.H200, block_order=seed) for seed in (3, 4)]

    def run(gpu):
        return (emu.group_rational_forward(x, numerator, denominator, gpu),
                *emu.group_rational_backward(grad_out, x, numerator, denominator, gpu))

    first = run(gpus[0])
    for gpu in gpus[1:]:
        for name, a, b in zip(('y', 'grad_x', 'grad_numerator', 'grad_denominator'), first,
                              run(gpu)):
            assert torch.equal(a, b), (name, gpu)


def test_group_rational_emulated_sign_at_zero_and_denormals_match_the_cpu(cpu_kernel):
    """s(-0) = +1 and s(-denormal) = -1 in the kernels, as on the CPU: with a0 != 0 and b1 != 0,
    dF/dx at 0 is a1 - s(x) |b1| a0, 1.5 for -denormal and -0.5 for +-0 here (a GPU flushing
    denormals would give -0.5 for all three: the CUDA build keeps denormals,
    docs/ops.md)."""
    denormal = torch.finfo(torch.float32).tiny / 4
    x = torch.tensor([[-denormal, -0.0, 0.0, denormal]] * 2, dtype=torch.float32)
    numerator = torch.tensor([[1.0, 0.5, 0.0, 0.0, 0.0, 0.0]])
    denominator = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2)
    grad_out = torch.ones_like(x)
    grad_x, _, grad_denominator = emu.group_rational_backward(grad_out, x, numerator, denominator,
                                                              emu.H200)
    torch.testing.assert_close(grad_x[0], torch.tensor([1.5, -0.5, -0.5, -0.5]))
    cpu = torch.ops.mmrkan.group_rational_backward(grad_out, x, numerator, denominator)
    torch.testing.assert_close(grad_x, cpu[0])
    torch.testing.assert_close(grad_denominator, cpu[2])


@GPUS
def test_group_rational_emulated_empty(gpu):
    x, numerator, denominator, grad_out = make_inputs(0, 8, GROUPS, torch.float32)
    emu.clear_launch_log()
    assert emu.group_rational_forward(x, numerator, denominator, gpu).shape == (0, 8)
    grad_x, grad_numerator, grad_denominator = emu.group_rational_backward(
        grad_out, x, numerator, denominator, gpu)
    assert grad_x.shape == (0, 8)
    assert not grad_numerator.any() and not grad_denominator.any()
    assert emu.launch_log() == []  # a grid of 0 blocks is an invalid launch on a GPU
