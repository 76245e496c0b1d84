"""kan_conv2d's CUDA kernels run on the SIMT emulator, against the PyTorch reference.

The real CUDA launcher (geometry, dispatch to the specialised or the run-time-basis kernels, the
launch plan) and kernels, compiled for the emulator (mmrkan.testing.cuda_emulation), on the
emulated H200 (blocks in index order) and 2-SM GPU (blocks in a shuffled order): the plans are
the same (shapes only), so forward and gradients must be bitwise identical on both.
"""
import dataclasses

import pytest
import torch

from mmrkan.ops.kan_conv import cuda_kernels_unsupported
from mmrkan.ops.kan_conv_options import kan_conv2d_options
from mmrkan.ops.reference import kan_conv2d_reference_with_options
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
GRAD_NAMES = ('x', 'base_weight', 'poly_weight', 'norm_scale')


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


def options_of(basis='chebyshev', **kwargs):
    return kan_conv2d_options('test', basis, **kwargs)


def op_arguments(options, stride):
    """stride, the codes and basis_params of the op schema."""
    return (stride, *options.codes, list(options.basis_params))


def norm_scale_for(options, dtype):
    weight_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return torch.full((1, ), 0.7 if options.normalization == 'arctan' else 0.0, dtype=weight_dtype)


def run_emulated(x, base_weight, poly_weight, stride, options, gpu, grad_out, norm_scale=None):
    if norm_scale is None:
        norm_scale = norm_scale_for(options, x.dtype)
    arguments = op_arguments(options, stride)
    y = emu.kan_conv2d_forward(x, base_weight, poly_weight, norm_scale, *arguments, gpu)
    grads = emu.kan_conv2d_backward(grad_out, x, base_weight, poly_weight, norm_scale, *arguments,
                                    gpu)
    return (y, *grads)


def run_and_compare(x, base_weight, poly_weight, stride, options, gpu, exact_reference=False):
    """Forward and every gradient of the emulated kernels against the reference (computed in
    float64 with `exact_reference`); returns the launch log."""
    norm_scale = norm_scale_for(options, x.dtype)
    inputs = [t.clone().requires_grad_() for t in (x, base_weight, poly_weight, norm_scale)]
    reference_inputs = [t.double() for t in inputs] if exact_reference else inputs
    expected = kan_conv2d_reference_with_options(*reference_inputs[:3], reference_inputs[3],
                                                 stride, options)
    grad_out = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    want = torch.autograd.grad(expected, inputs, grad_out.to(expected.dtype), allow_unused=True)
    want = [torch.zeros_like(t) if w is None else w.to(t.dtype) for t, w in zip(inputs, want)]
    emu.clear_launch_log()
    y, *grads = run_emulated(x, base_weight, poly_weight, stride, options, gpu, grad_out,
                             norm_scale)

    if exact_reference:
        # As the CPU kernel's tests: 1e-5 relative to each tensor's largest value (fp32 sums of
        # terms of ~10 lose ~1e-5 of them when they cancel).
        for name, got, wanted in zip(('output', ) + GRAD_NAMES, [y, *grads],
                                     [expected.detach().to(x.dtype), *want]):
            scale = max(1.0, wanted.abs().max().item()) if wanted.numel() else 1.0
            torch.testing.assert_close(got, wanted, rtol=1e-5, atol=1e-5 * scale,
                                       msg=lambda m, n=name: f'{n}: {m}')
        return emu.launch_log()
    tolerances = TOLERANCES.get(x.dtype, {})
    torch.testing.assert_close(y, expected.detach().to(x.dtype), **tolerances)
    for name, got, wanted in zip(GRAD_NAMES, grads, want):
        grad_tolerances = (tolerances if name == 'x' else WEIGHT_GRAD_TOLERANCES[x.dtype])
        torch.testing.assert_close(got, wanted, msg=lambda m, n=name: f'grad {n}: {m}',
                                   **grad_tolerances)
    return emu.launch_log()


def plan(x, poly_weight, stride, options=None, backward=False):
    options = options or options_of()
    codes = options.codes
    return emu.kan_conv2d_plan(x, poly_weight, stride, codes[0], backward, codes[1], codes[2],
                               list(options.basis_params))


@pytest.mark.parametrize('basis,num_functions',
                         [('chebyshev', k) for k in range(1, 9)] +
                         [('rbf', k) for k in range(2, 9)])
def test_kan_conv2d_emulated_functions(basis, num_functions):
    """Chebyshev degrees 0 to 7 (1 to 8 functions) and 2 to 8 rbf bumps: the specialisations
    (Chebyshev K = 3, 4) and the run-time-basis kernels."""
    x, base_weight, poly_weight = make_inputs((1, 3, 5, 6), num_functions)
    options = options_of(basis)
    for stride in (1, 2):
        specialised = basis == 'chebyshev' and num_functions in (3, 4)
        assert plan(x, poly_weight, stride, options)['specialised'] == specialised
        run_and_compare(x, base_weight, poly_weight, stride, options, emu.H200)


# (basis, K, options): every family, with non-default settings, both pixelwise normalisations
# and both base activations. b_spline of every order (K = grid_size + order <= 8).
FAMILIES = [
    ('chebyshev', 4, dict(normalization='none')),
    ('chebyshev', 4, dict(base_activation='silu')),
    ('chebyshev', 3, dict(normalization='none', base_activation='silu')),
    ('legendre', 4, {}),
    ('legendre', 8, dict(base_activation='silu')),
    ('jacobi', 4, {}),
    ('jacobi', 6, dict(jacobi_alpha=1.5, jacobi_beta=-0.3, normalization='none')),
    ('hermite', 5, {}),
    ('hermite', 4, dict(normalization='none', base_activation='silu')),
    ('rbf', 3, {}),
    ('rbf', 5, dict(grid_range=(-2.0, 1.0), normalization='tanh', base_activation='silu')),
    ('b_spline', 6, {}),
    ('b_spline', 2, dict(spline_order=1, grid_range=(-0.8, 1.3))),
    ('b_spline', 4, dict(spline_order=2, grid_range=(-1.5, 2.0))),
    ('b_spline', 8, dict(spline_order=4, base_activation='silu')),
    ('b_spline', 7, dict(spline_order=5, grid_range=(-2.5, 2.5), normalization='tanh')),
]
FAMILY_IDS = [f'{basis}-K{k}' + ''.join(f'-{v}' for v in kw.values())
              for basis, k, kw in FAMILIES]


@GPUS
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis,num_functions,kwargs', FAMILIES, ids=FAMILY_IDS)
def test_kan_conv2d_emulated_families(basis, num_functions, kwargs, stride, gpu):
    """Every family and pixelwise option on the run-time-basis kernels, forward and every
    gradient in fp32 against the float64 reference (norm_scale's gradient 0); several tiles and
    blocks."""
    options = options_of(basis, **kwargs)
    x, base_weight, poly_weight = make_inputs((1, 2, 41, 67), num_functions)
    assert not plan(x, poly_weight, stride, options)['specialised']
    assert plan(x, poly_weight, stride, options, backward=True)['blocks'] > 1
    run_and_compare(x, base_weight, poly_weight, stride, options, gpu, exact_reference=True)


@pytest.mark.parametrize('basis,num_functions,kwargs',
                         [('jacobi', 5, dict(jacobi_alpha=2.0, jacobi_beta=0.25)),
                          ('b_spline', 6, dict(base_activation='silu')),
                          ('rbf', 4, dict(grid_range=(-1.5, 0.5)))])
def test_kan_conv2d_emulated_families_float64(basis, num_functions, kwargs):
    run_and_compare(*make_inputs((1, 2, 6, 7), num_functions, torch.float64), 2,
                    options_of(basis, **kwargs), emu.H200)


def test_kan_conv2d_emulated_b_spline_outside_the_grid_and_nan():
    """B-splines are 0 outside their grid (only the base term is left) and NaN for NaN."""
    options = options_of('b_spline', grid_range=(-0.5, 0.5))
    x, base_weight, poly_weight = make_inputs((1, 1, 5, 6), 6)
    far = x.sign() * 4 + x  # every |x| > 3: no spline
    y = emu.kan_conv2d_forward(far, base_weight, poly_weight, torch.zeros(1),
                               *op_arguments(options, 1), emu.H200)
    expected = kan_conv2d_reference_with_options(far, base_weight, poly_weight, torch.zeros(1), 1,
                                                 options)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    # Windows without padding (whose splines at 0 are not 0): the base term alone.
    base_only = kan_conv2d_reference_with_options(far, base_weight, torch.zeros(9, 6),
                                                  torch.zeros(1), 1, options)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], base_only[..., 1:-1, 1:-1], rtol=1e-5,
                               atol=1e-5)
    nan = torch.full_like(x, float('nan'))
    assert torch.isnan(emu.kan_conv2d_forward(nan, base_weight, poly_weight, torch.zeros(1),
                                              *op_arguments(options, 1), emu.H200)).all()


# Per-window normalisations (the per-output kernels): every normalisation with several
# families and both base activations.
WINDOW_CASES = [
    ('chebyshev', 4, dict(normalization='arctan')),
    ('legendre', 5, dict(normalization='arctan', base_activation='silu')),
    ('hermite', 3, dict(normalization='min-max')),
    ('b_spline', 6, dict(normalization='min-max', base_activation='silu')),
    ('jacobi', 4, dict(normalization='standardization', jacobi_alpha=1.5, jacobi_beta=-0.3)),
    ('rbf', 5, dict(normalization='standardization', base_activation='silu')),
    ('b_spline', 3, dict(normalization='arctan', spline_order=1, grid_range=(-0.8, 1.3))),
]
WINDOW_IDS = [f'{basis}-K{k}' + ''.join(f'-{v}' for v in kw.values())
              for basis, k, kw in WINDOW_CASES]


@GPUS
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis,num_functions,kwargs', WINDOW_CASES, ids=WINDOW_IDS)
def test_kan_conv2d_emulated_window_normalizations(basis, num_functions, kwargs, stride, gpu):
    """arctan (and its scale's gradient), min-max and standardization: the per-window kernels,
    forward and every gradient in fp32 against the float64 reference; several blocks."""
    options = options_of(basis, **kwargs)
    x, base_weight, poly_weight = make_inputs((2, 3, 23, 29), num_functions)
    assert plan(x, poly_weight, stride, options)['per_window'] == 1
    assert plan(x, poly_weight, stride, options, backward=True)['blocks'] > 1
    log = run_and_compare(x, base_weight, poly_weight, stride, options, gpu, exact_reference=True)
    assert len(log) == 2  # one launch per direction


@pytest.mark.parametrize('normalization', ['arctan', 'min-max', 'standardization'])
@pytest.mark.parametrize('dtype', ['fp64', 'bf16'])
def test_kan_conv2d_emulated_window_normalizations_dtypes(normalization, dtype):
    run_and_compare(*make_inputs((1, 2, 6, 7), 4, DTYPES[dtype]), 2,
                    options_of('legendre', normalization=normalization), emu.H200)


def test_kan_conv2d_emulated_window_degenerate_windows():
    """Constant windows (standardization's std = 0, min-max ties, whose gradient goes to the
    first tap) as the reference."""
    x = torch.zeros(1, 1, 5, 6)
    x[..., 2:, 3:] = 1.5
    base_weight, poly_weight = torch.randn(9), torch.randn(9, 4) * 0.3
    for normalization in ('min-max', 'standardization'):
        run_and_compare(x, base_weight, poly_weight, 1,
                        options_of('chebyshev', normalization=normalization), emu.H200,
                        exact_reference=True)


@pytest.mark.parametrize('normalization', ['arctan', 'standardization'])
def test_kan_conv2d_emulated_window_bitwise_identical_across_gpus(normalization):
    options = options_of('hermite', normalization=normalization)
    x, base_weight, poly_weight = make_inputs((1, 2, 41, 67), 4)
    assert plan(x, poly_weight, 1, options, backward=True)['blocks'] > 1
    grad_out = torch.randn(output_shape(x.shape, 1))
    gpus = list(emu.GPUS) + [dataclasses.replace(emu.H200, block_order=3)]
    first = run_emulated(x, base_weight, poly_weight, 1, options, gpus[0], grad_out)
    for gpu in gpus[1:]:
        again = run_emulated(x, base_weight, poly_weight, 1, options, gpu, grad_out)
        for name, a, b in zip(('y', 'grad_x', 'grad_base', 'grad_poly', 'grad_scale'), first,
                              again):
            assert torch.equal(a, b), (name, gpu)


# Options the CUDA kernels do not run: the launcher refuses them with the reason, and
# mmrkan.ops.kan_conv2d routes the same ones to the reference (cuda_kernels_unsupported).
UNSUPPORTED = [
    ('chebyshev', 9, {}),
    ('rbf', 12, {}),
    ('b_spline', 10, dict(normalization='standardization')),
]


@pytest.mark.parametrize('basis,num_functions,kwargs', UNSUPPORTED,
                         ids=[f'{u[0]}-K{u[1]}' for u in UNSUPPORTED])
def test_kan_conv2d_emulated_unsupported_options_raise(basis, num_functions, kwargs):
    options = options_of(basis, **kwargs)
    assert cuda_kernels_unsupported(num_functions) is not None
    x, base_weight, poly_weight = make_inputs((1, 1, 4, 5), num_functions)
    grad_out = torch.zeros(1, 1, 4, 5)
    norm_scale = norm_scale_for(options, x.dtype)
    message = f'the CUDA kernels do not support K={num_functions} basis functions'
    with pytest.raises(RuntimeError, match=message):
        emu.kan_conv2d_forward(x, base_weight, poly_weight, norm_scale, *op_arguments(options, 1),
                               emu.H200)
    with pytest.raises(RuntimeError, match=message):
        emu.kan_conv2d_backward(grad_out, x, base_weight, poly_weight, norm_scale,
                                *op_arguments(options, 1), emu.H200)


def test_kan_conv2d_emulated_python_and_launcher_agree_on_support():
    """Every family and normalisation with K <= 8 runs on the launcher (K > 8: the test above)."""
    x, base_weight, poly_weight = make_inputs((1, 1, 3, 4), 8)
    assert cuda_kernels_unsupported(8) is None
    for basis, _, kwargs in FAMILIES:
        for normalization in ('none', 'tanh', 'arctan', 'min-max', 'standardization'):
            options = options_of(basis, **dict(kwargs, normalization=normalization))
            emu.kan_conv2d_forward(x, base_weight, poly_weight, torch.ones(1),
                                   *op_arguments(options, 1), emu.H200)


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
    log = run_and_compare(x, base_weight, poly_weight, stride, options_of(), gpu)
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
    run_and_compare(*make_inputs((1, 3, 7, 9), num_functions, DTYPES[dtype]), stride, options_of(),
                    emu.H200)


@pytest.mark.parametrize('basis,num_functions', [('chebyshev', 4), ('chebyshev', 3),
                                                 ('rbf', 5)])
@pytest.mark.parametrize('stride', [1, 2])
def test_kan_conv2d_emulated_bitwise_identical_across_gpus(stride, basis, num_functions):
    """The same bits on the H200 and the 2-SM GPU, and under two more block orders: forward and
    every gradient (several blocks, so another block does the final sum)."""
    x, base_weight, poly_weight = make_inputs((1, 2, 41, 67), num_functions)
    options = options_of(basis)
    assert plan(x, poly_weight, stride, options, backward=True)['blocks'] > 1
    grad_out = torch.randn(output_shape(x.shape, stride))
    gpus = list(emu.GPUS) + [dataclasses.replace(emu.H200, block_order=seed) for seed in (3, 4)]
    first = run_emulated(x, base_weight, poly_weight, stride, options, gpus[0], grad_out)
    for gpu in gpus[1:]:
        again = run_emulated(x, base_weight, poly_weight, stride, options, gpu, grad_out)
        for name, a, b in zip(('y', 'grad_x', 'grad_base', 'grad_poly', 'grad_scale'), first,
                              again):
            assert torch.equal(a, b), (name, gpu)


@GPUS
def test_kan_conv2d_emulated_empty(gpu):
    x, base_weight, poly_weight = make_inputs((0, 3, 5, 6), 3)
    arguments = op_arguments(options_of(), 1)
    emu.clear_launch_log()
    assert emu.kan_conv2d_forward(x, base_weight, poly_weight, torch.ones(1), *arguments,
                                  gpu).shape == (0, 3, 5, 6)
    grad_x, grad_base, grad_poly, grad_scale = emu.kan_conv2d_backward(
        torch.zeros(0, 3, 5, 6), x, base_weight, poly_weight, torch.ones(1), *arguments, gpu)
    assert grad_x.shape == (0, 3, 5, 6)
    assert not grad_base.any() and not grad_poly.any() and not grad_scale.any()
    assert emu.launch_log() == []


def test_kan_conv2d_emulated_shared_memory_over_the_device_limit_raises():
    """A GPU with 1 KiB of shared memory per block is refused by the launcher, with the sizes."""
    tiny = emu.EmulatedGpu('1 KiB GPU', smem_per_block=1024)
    x, base_weight, poly_weight = make_inputs((1, 1, 16, 16), 3)
    with pytest.raises(RuntimeError, match=r'needs \d+ bytes of shared memory per block; this '
                                           r'GPU allows 1024'):
        emu.kan_conv2d_forward(x, base_weight, poly_weight, torch.zeros(1),
                               *op_arguments(options_of(), 1), tiny)
