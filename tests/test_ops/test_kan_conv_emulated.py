"""kan_conv2d's CUDA kernels run on the SIMT emulator, against the PyTorch reference.

The real CUDA launcher (geometry, dispatch, launch plan, the backward's two-pass reduction) and
kernels, compiled for the emulator (mmrkan.testing.cuda_emulation), under the launch plan of an
H200 (132 SMs: one block per tile) and of a 2-SM GPU (16 blocks looping over more tiles).
"""
import pytest
import torch

from mmrkan.ops.reference import BASIS_CODES, kan_conv2d_reference
from mmrkan.testing import cuda_emulation as emu

GPUS = pytest.mark.parametrize('gpu', emu.GPUS, ids=lambda gpu: gpu.name)
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5),
              torch.float64: dict(rtol=1e-12, atol=1e-12)}
# Weight gradients: fp32 sums of thousands of terms, in another order than the reference's
# (errors up to 3e-5 seen); fp16/bf16 x adds the rounding of x and grad_out.
WEIGHT_GRAD_TOLERANCES = {torch.float32: dict(rtol=1e-4, atol=1e-4),
                          torch.float64: TOLERANCES[torch.float64]}


def make_inputs(shape, num_functions, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    x = torch.randn(shape, generator=generator).to(dtype)
    base_weight = torch.randn(9, generator=generator).to(weight_dtype)
    poly_weight = (torch.randn(9, num_functions, generator=generator) * 0.3).to(weight_dtype)
    return x, base_weight, poly_weight


def run_and_compare(x, base_weight, poly_weight, stride, basis, gpu):
    """Forward and every gradient of the emulated kernels against the reference; returns the
    launch log."""
    code = BASIS_CODES[basis]
    emu.clear_launch_log()
    y = emu.kan_conv2d_forward(x, base_weight, poly_weight, stride, code, gpu)
    inputs = [t.clone().requires_grad_() for t in (x, base_weight, poly_weight)]
    expected = kan_conv2d_reference(*inputs, stride=stride, basis=basis)
    grad_out = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    want = torch.autograd.grad(expected, inputs, grad_out)
    grads = emu.kan_conv2d_backward(grad_out, x, base_weight, poly_weight, stride, code, gpu)

    tolerances = TOLERANCES.get(x.dtype, {})
    torch.testing.assert_close(y, expected.detach(), **tolerances)
    for name, got, wanted in zip(('x', 'base_weight', 'poly_weight'), grads, want):
        grad_tolerances = tolerances if name == 'x' else WEIGHT_GRAD_TOLERANCES[got.dtype]
        torch.testing.assert_close(got, wanted, msg=lambda m, n=name: f'grad {n}: {m}',
                                   **grad_tolerances)
    return emu.launch_log()


def tiles(out_height, out_width, planes):
    """Tiles of the launch plan (kan_launch_plan.h), for the assertions on the grids."""
    def balanced(n, cap):
        count = -(-n // cap)
        return -(-n // count)

    tile_w = balanced(out_width, 32)
    tile_h = balanced(out_height, max(1, 256 // tile_w))
    whole_planes = (tile_h, tile_w) == (out_height, out_width)
    tile_planes = min(planes, 256 // (tile_h * tile_w)) if whole_planes else 1
    per_group = -(-out_height // tile_h) * -(-out_width // tile_w)
    return -(-planes // tile_planes) * per_group


@pytest.mark.parametrize('basis', ['chebyshev', 'rbf'])
@pytest.mark.parametrize('degree', range(1, 8))
def test_kan_conv2d_emulated_degrees(basis, degree):
    """Chebyshev degrees 1 to 7 (2 to 8 basis functions), and as many rbf bumps."""
    run_and_compare(*make_inputs((1, 3, 5, 6), degree + 1), 1, basis, emu.H200)


# Output sizes: planes smaller than a tile (several whole planes per tile), one plane exactly one
# 8 x 32 tile, planes of 2 x 2 tiles; odd sizes; N * C large enough for several blocks.
SHAPES = {
    'small_planes': (2, 20, 4, 5),
    'plane_equals_tile': (1, 3, 8, 32),
    'large_planes': (1, 5, 19, 37),
}


@GPUS
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('shape', SHAPES)
def test_kan_conv2d_emulated_tiles(shape, stride, gpu):
    n, c, out_height, out_width = SHAPES[shape]
    # The input size that gives this output size (odd for stride 2).
    height, width = (out_height - 1) * stride + 1, (out_width - 1) * stride + 1
    log = run_and_compare(*make_inputs((n, c, height, width), 3), stride, 'chebyshev', gpu)
    forward, backward = log[0], log[1]
    num_tiles = tiles(out_height, out_width, n * c)
    resident = gpu.sm_count * gpu.max_blocks_per_sm
    assert forward['grid'][0] == backward['grid'][0] == min(num_tiles, resident)


def test_kan_conv2d_emulated_several_waves():
    """The 2-SM GPU's 16 blocks each loop over several of the 20 tiles."""
    assert tiles(19, 37, 5) > emu.SMALL_GPU.sm_count * emu.SMALL_GPU.max_blocks_per_sm


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64],
                         ids=['fp16', 'bf16', 'fp64'])
def test_kan_conv2d_emulated_dtypes(dtype):
    run_and_compare(*make_inputs((1, 3, 7, 9), 3, dtype), 2, 'chebyshev', emu.H200)


def test_kan_conv2d_emulated_backward_bitwise_deterministic():
    x, base_weight, poly_weight = make_inputs((1, 5, 19, 37), 3)
    grad_out = torch.randn(1, 5, 19, 37)
    first = emu.kan_conv2d_backward(grad_out, x, base_weight, poly_weight, 1, 0, emu.SMALL_GPU)
    second = emu.kan_conv2d_backward(grad_out, x, base_weight, poly_weight, 1, 0, emu.SMALL_GPU)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


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


def test_kan_conv2d_emulated_shared_memory_over_the_limit_raises():
    """A GPU with 1 KiB of shared memory per block cannot run the forward's 9 x 256 fp32 terms."""
    tiny = emu.EmulatedGpu('1 KiB GPU', sm_count=2, smem_per_block=1024)
    x, base_weight, poly_weight = make_inputs((1, 1, 16, 16), 3)
    with pytest.raises(RuntimeError, match='dynamic shared memory are over the per-block limit'):
        emu.kan_conv2d_forward(x, base_weight, poly_weight, 1, 0, tiny)
