"""group_rational's CUDA kernels run on the SIMT emulator, against the PyTorch reference.

Every test runs the real CUDA launcher (dtype dispatch, vector width, launch plan, the backward's
two-pass reduction) and kernels, compiled for the emulator (mmrkan.testing.cuda_emulation), under
the launch plan of an H200 (132 SMs: one wave) and of a 2-SM GPU (grid-stride loops).
"""
import pytest
import torch

from mmrkan.ops.reference import group_rational_reference
from mmrkan.testing import cuda_emulation as emu

GPUS = pytest.mark.parametrize('gpu', emu.GPUS, ids=lambda gpu: gpu.name)
GROUPS = 2
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
          'fp64': torch.float64}
# Coefficient gradients are fp32 sums of thousands of (fp16/bf16-rounded) terms, in another order
# than autograd's.
GRAD_TOLERANCES = {torch.float32: dict(rtol=1e-4, atol=1e-4),
                   torch.float16: dict(rtol=1e-3, atol=1e-3),
                   torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
                   torch.float64: dict(rtol=1e-12, atol=1e-12)}


def make_inputs(rows, channels, numerator_rows, dtype, storage_offset=0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    coeff_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    values = torch.randn(rows * channels + storage_offset, generator=generator).to(dtype)
    x = values[storage_offset:].view(rows, channels)
    numerator = (torch.randn(numerator_rows, 6, generator=generator) * 0.5).to(coeff_dtype)
    denominator = (torch.randn(GROUPS, 4, generator=generator) * 0.5).to(coeff_dtype)
    grad_out = torch.randn(rows, channels, generator=generator).to(dtype)
    return x, numerator, denominator, grad_out


def reference_grads(x, numerator, denominator, grad_out):
    inputs = [t.detach().clone().requires_grad_() for t in (x, numerator, denominator)]
    return torch.autograd.grad(group_rational_reference(*inputs), inputs, grad_out)


def expected_block_x(columns):
    """The plan's threads per block along the columns (kan_launch_plan.h)."""
    block_x = 1
    while block_x < 32 and block_x < columns:
        block_x *= 2
    return block_x


def check_against_reference(x, numerator, denominator, grad_out, gpu, vector):
    vec = 16 // x.element_size() if vector else 1
    emu.clear_launch_log()
    y = emu.group_rational_forward(x, numerator, denominator, gpu)
    grads = emu.group_rational_backward(grad_out, x, numerator, denominator, gpu)
    forward, backward, *reductions = emu.launch_log()
    # The path the launcher took: one thread column per vector of `vec` channels.
    assert forward['block'][0] == backward['block'][0] == expected_block_x(x.shape[-1] // vec)
    assert len(reductions) == 2  # numerator and denominator gradients

    torch.testing.assert_close(y, group_rational_reference(x, numerator, denominator))
    want = reference_grads(x, numerator, denominator, grad_out)
    for name, got, expected in zip(('x', 'numerator', 'denominator'), grads, want):
        tolerances = GRAD_TOLERANCES[x.dtype] if name != 'x' else {}
        torch.testing.assert_close(got, expected, msg=lambda m, n=name: f'grad {n}: {m}',
                                   **tolerances)


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


@GPUS
@pytest.mark.parametrize('dtype,case', PARAMS)
def test_group_rational_emulated_matches_reference(dtype, case, gpu):
    vector, channels, numerator_rows, offset = {**CASES, **EXTRA_FP32_CASES}[case]
    inputs = make_inputs(15, channels, numerator_rows, DTYPES[dtype], storage_offset=offset)
    check_against_reference(*inputs, gpu, vector)


def test_group_rational_emulated_grid_stride():
    """More rows than the 2-SM GPU's grid covers: every thread loops over several rows."""
    rows = 700
    inputs = make_inputs(rows, 32, GROUPS, torch.float32)
    check_against_reference(*inputs, emu.SMALL_GPU, vector=True)
    forward = emu.launch_log()[0]
    assert forward['grid'][1] * forward['block'][1] < rows


@GPUS
def test_group_rational_emulated_backward_bitwise_deterministic(gpu):
    x, numerator, denominator, grad_out = make_inputs(700, 32, GROUPS, torch.float32)
    first = emu.group_rational_backward(grad_out, x, numerator, denominator, gpu)
    second = emu.group_rational_backward(grad_out, x, numerator, denominator, gpu)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


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
