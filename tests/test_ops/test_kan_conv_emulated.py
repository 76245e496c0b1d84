"""kan_conv2d's CUDA kernels run on the SIMT emulator, against the PyTorch reference.

The real CUDA launcher (geometry, dispatch to the specialised or the run-time-basis kernels, the
launch plan) and kernels, compiled for the emulator (mmrkan.testing.cuda_emulation), on the
emulated H200 (blocks in index order) and 2-SM GPU (blocks in a shuffled order): the plans are
the same (shapes only), so forward and gradients must be bitwise identical on both.
"""
import dataclasses

import pytest
import torch

from mmrkan.ops.reference import BASIS_CODES, kan_conv2d_reference
from mmrkan.testing import cuda_emulation as emu

GPUS = pytest.mark.parametrize('gpu', emu.GPUS, ids=lambda gpu: gpu.name)
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
          'fp64': torch.float64}
# fp32: the kernels' tanh (ex2.approx / rcp.approx, emulated at their maximum error) is within
# about 2e-7 of the reference's.
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5),
              torch.float64: dict(rtol=1e-12, atol=1e-12)}
# Weight gradients: fp32 sums of thousands of terms, in another order than the reference's;
# fp16/bf16 x adds the rounding of x and grad_out.
WEIGHT_GRAD_TOLERANCES = {torch.float32: dict(rtol=1e-4, atol=1e-4),
                          torch.float16: dict(rtol=2e-3, atol=2e-3),
                          torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
                          torch.float64: TOLERANCES[torch.float64]}


def make_inputs(shape, num_functions, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    x = torch.randn(shape, generator=generator).to(dtype)
    base_weight = torch.randn(9, generator=generator).to(weight_dtype)
    poly_weight = (torch.randn(9, num_functions, generator=generator) * 0.3).to(weight_dtype)
    return x, base_weight, poly_weight


def output_shape(shape, stride):
    n, c, height, width = shape
    return n, c, (height - 1) // stride + 1, (width - 1) // stride + 1


def run_emulated(x, base_weight, poly_weight, stride, basis, gpu, grad_out):
    code = BASIS_CODES[basis]
    y = emu.kan_conv2d_forward(x, base_weight, poly_weight, stride, code, gpu)
    grads = emu.kan_conv2d_backward(grad_out, x, base_weight, poly_weight, stride, code, gpu)
    return (y, *grads)


def run_and_compare(x, base_weight, poly_weight, stride, basis, gpu):
    """Forward and every gradient of the emulated kernels against the reference; returns the
    launch log."""
    inputs = [t.clone().requires_grad_() for t in (x, base_weight, poly_weight)]
    expected = kan_conv2d_reference(*inputs, stride=stride, basis=basis)
    grad_out = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    want = torch.autograd.grad(expected, inputs, grad_out)
    emu.clear_launch_log()
    y, *grads = run_emulated(x, base_weight, poly_weight, stride, basis, gpu, grad_out)

    tolerances = TOLERANCES.get(x.dtype, {})
    torch.testing.assert_close(y, expected.detach(), **tolerances)
    for name, got, wanted in zip(('x', 'base_weight', 'poly_weight'), grads, want):
        grad_tolerances = tolerances if name == 'x' else WEIGHT_GRAD_TOLERANCES[x.dtype]
        torch.testing.assert_close(got, wanted, msg=lambda m, n=name: f'grad {n}: {m}',
                                   **grad_tolerances)
    return emu.launch_log()


def plan(x, poly_weight, stride, basis='chebyshev', backward=False):
    return emu.kan_conv2d_plan(x, poly_weight, stride, BASIS_CODES[basis], backward)


@pytest.mark.parametrize('basis,num_functions',
                         [('chebyshev', k) for k in range(1, 9)] +
                         [('rbf', k) for k in range(2, 9)])
def test_kan_conv2d_emulated_functions(basis, num_functions):
    """Chebyshev degrees 0 to 7 (1 to 8 functions) and 2 to 8 rbf bumps: the specialisations
    (Chebyshev K = 3, 4) and the run-time-basis kernels."""
    x, base_weight, poly_weight = make_inputs((1, 3, 5, 6), num_functions)
    for stride in (1, 2):
        specialised = basis == 'chebyshev' and num_functions in (3, 4)
        assert plan(x, poly_weight, stride, basis)['specialised'] == specialised
        run_and_compare(x, base_weight, poly_weight, stride, basis, emu.H200)


# Small planes (several whole planes per tile, a window thread keeping its row over the planes),
# planes whose windows a thread's rows cross (several per tile, too tall for that), a plane of
# several tiles (odd sizes, a partly filled last tile), and two tiles across one row.
SHAPES = {
    'small_planes': (2, 9, 5, 7),
    'planes_crossed': (1, 6, 16, 16),
    'several_tiles': (1, 2, 41, 67),
    'one_tile_row': (1, 3, 3, 64),
}


@GPUS
@pytest.mark.parametrize('num_functions', [3, 4])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('shape', SHAPES)
def test_kan_conv2d_emulated_tiles(shape, stride, num_functions, gpu):
    x, base_weight, poly_weight = make_inputs(SHAPES[shape], num_functions)
    forward_plan = plan(x, poly_weight, stride)
    backward_plan = plan(x, poly_weight, stride, backward=True)
    log = run_and_compare(x, base_weight, poly_weight, stride, 'chebyshev', gpu)
    # One launch each; the backward reduces its weight gradients in the same launch.
    assert [entry['grid'][0] for entry in log] == [forward_plan['blocks'],
                                                    backward_plan['blocks']]
    # Which path of the forward's window loop runs (kan_conv2d_kernel.cuh: evaluate_window).
    if shape == 'small_planes':
        assert forward_plan['tile_planes'] > 1 and forward_plan['planes_per_step'] > 0
    if shape == 'planes_crossed':
        assert forward_plan['tile_planes'] > 1 and forward_plan['planes_per_step'] == 0
    if shape == 'several_tiles':
        assert forward_plan['tiles_w'] * forward_plan['tiles_h'] > 1
        assert forward_plan['planes_per_step'] == 0
        assert backward_plan['blocks'] > 1 and backward_plan['tiles_per_block'] > 1


@pytest.mark.parametrize('num_functions', [3, 4, 6])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('dtype', DTYPES)
def test_kan_conv2d_emulated_dtypes(dtype, stride, num_functions):
    run_and_compare(*make_inputs((1, 3, 7, 9), num_functions, DTYPES[dtype]), stride, 'chebyshev',
                    emu.H200)


@pytest.mark.parametrize('basis,num_functions', [('chebyshev', 4), ('chebyshev', 3),
                                                 ('rbf', 5)])
@pytest.mark.parametrize('stride', [1, 2])
def test_kan_conv2d_emulated_bitwise_identical_across_gpus(stride, basis, num_functions):
    """The same bits on the H200 and the 2-SM GPU, and under two more block orders: forward and
    every gradient (several blocks, so another block does the final sum)."""
    x, base_weight, poly_weight = make_inputs((1, 2, 41, 67), num_functions)
    assert plan(x, poly_weight, stride, basis, backward=True)['blocks'] > 1
    grad_out = torch.randn(output_shape(x.shape, stride))
    gpus = list(emu.GPUS) + [dataclasses.replace(emu.H200, block_order=seed) for seed in (3, 4)]
    first = run_emulated(x, base_weight, poly_weight, stride, basis, gpus[0], grad_out)
    for gpu in gpus[1:]:
        again = run_emulated(x, base_weight, poly_weight, stride, basis, gpu, grad_out)
        for name, a, b in zip(('y', 'grad_x', 'grad_base', 'grad_poly'), first, again):
            assert torch.equal(a, b), (name, gpu)


@GPUS
def test_kan_conv2d_emulated_empty(gpu):
    x, base_weight, poly_weight = make_inputs((0, 3, 5, 6), 3)
    emu.clear_launch_log()
    assert emu.kan_conv2d_forward(x, base_weight, poly_weight, 1, 0, gpu).shape == (0, 3, 5, 6)
    grad_x, grad_base, grad_poly = emu.kan_conv2d_backward(
        torch.zeros(0, 3, 5, 6), x, base_weight, poly_weight, 1, 0, gpu)
    assert grad_x.shape == (0, 3, 5, 6)
    assert not grad_base.any() and not grad_poly.any()
    assert emu.launch_log() == []


def test_kan_conv2d_emulated_shared_memory_over_the_device_limit_raises():
    """A GPU with 1 KiB of shared memory per block is refused by the launcher, with the sizes."""
    tiny = emu.EmulatedGpu('1 KiB GPU', smem_per_block=1024)
    x, base_weight, poly_weight = make_inputs((1, 1, 16, 16), 3)
    with pytest.raises(RuntimeError, match=r'needs \d+ bytes of shared memory per block; this '
                                           r'GPU allows 1024'):
        emu.kan_conv2d_forward(x, base_weight, poly_weight, 1, 0, tiny)
