"""KAN convolution: definition, kernels vs the reference, gradients, errors, module, registry."""
import math

import pytest
import torch

from mmrkan.ops import KANConv2d, kan_conv2d
from mmrkan.ops.reference import kan_basis_reference, kan_conv2d_reference

IMPLS = {'kernel': kan_conv2d, 'reference': kan_conv2d_reference}
GRAD_NAMES = ('x', 'base_weight', 'poly_weight')
# (basis, number of basis functions K): Chebyshev degrees 3, 2, 0 and rbf with 3 and 2 bumps.
BASES = [('chebyshev', 4), ('chebyshev', 3), ('chebyshev', 1), ('rbf', 3), ('rbf', 2)]


def random_inputs(shape=(2, 3, 5, 7), num_functions=4, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    base_weight = torch.randn(9, generator=generator, dtype=torch.float64)
    poly_weight = torch.randn(9, num_functions, generator=generator, dtype=torch.float64)
    return [t.to(dtype).requires_grad_() for t in (x, base_weight, poly_weight)]


def grads(fn, inputs, grad_out, **kwargs):
    return torch.autograd.grad(fn(*inputs, **kwargs), inputs, grad_out)


def naive_kan_conv2d(x, base_weight, poly_weight, stride, basis):
    """The definition, tap by tap: pad x with zeros, then evaluate the basis."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    functions = kan_basis_reference(padded, poly_weight.shape[1], basis)
    out_h, out_w = (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1
    out = torch.zeros(x.shape[0], x.shape[1], out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            for p in range(9):
                row, col = i * stride + p // 3, j * stride + p % 3
                out[..., i, j] += base_weight[p] * padded[..., row, col]
                for k, function in enumerate(functions):
                    out[..., i, j] += poly_weight[p, k] * function[..., row, col]
    return out


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis, num_functions', BASES)
def test_matches_the_definition(impl, stride, basis, num_functions, cpu_kernel):
    x, base_weight, poly_weight = (t.detach() for t in random_inputs((2, 2, 5, 4), num_functions))
    torch.testing.assert_close(
        IMPLS[impl](x, base_weight, poly_weight, stride=stride, basis=basis),
        naive_kan_conv2d(x, base_weight, poly_weight, stride, basis))


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis, num_functions', BASES)
def test_gradcheck_float64(impl, stride, basis, num_functions, cpu_kernel):
    inputs = random_inputs((1, 2, 5, 3), num_functions)
    assert torch.autograd.gradcheck(lambda *t: IMPLS[impl](*t, stride=stride, basis=basis),
                                    inputs)


@pytest.mark.parametrize('impl', IMPLS)
def test_padded_taps_contribute_the_basis_at_zero(impl, cpu_kernel):
    """Only T_2 of the top-left tap: border outputs see T_2(0) = -1, not 0."""
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    base_weight = torch.zeros(9, dtype=torch.float64)
    poly_weight = torch.zeros(9, 4, dtype=torch.float64)
    poly_weight[0, 2] = 1.0
    out = IMPLS[impl](x, base_weight, poly_weight)
    assert (out[..., 0, :] == -1).all() and (out[..., :, 0] == -1).all()
    t = torch.tanh(x[..., :-1, :-1])
    torch.testing.assert_close(out[..., 1:, 1:], 2 * t * t - 1)


@pytest.mark.parametrize('basis, num_functions, function', [
    ('chebyshev', 2, torch.tanh),  # T_1(tanh x)
    ('rbf', 3, lambda v: torch.exp(-v * v)),  # the middle bump: centre 0, width 1
])
def test_float32_basis_is_accurate_over_a_wide_range(basis, num_functions, function, cpu_kernel):
    """The fp32 kernels evaluate tanh and exp with their own vectorisable code."""
    special = [0.0, -0.0, 1e-30, -1e-6, 0.55, -0.55, 9.0, 1e4, -1e30]
    x = torch.cat([torch.linspace(-20, 20, 4001), torch.tensor(special)]).reshape(1, 1, 1, -1)
    base_weight = torch.zeros(9)
    poly_weight = torch.zeros(9, num_functions)
    poly_weight[4, 1] = 1.0  # centre tap, basis function 1: the output is B_1(x) itself
    out = kan_conv2d(x, base_weight, poly_weight, basis=basis)
    torch.testing.assert_close(out, function(x.double()).float(), atol=2e-7, rtol=0)
    nan = torch.full((1, 1, 1, 1), math.nan)
    assert torch.isnan(kan_conv2d(nan, base_weight, poly_weight, basis=basis)).all()


@pytest.mark.parametrize('size, stride, expected', [((7, 6), 2, (4, 3)), ((5, 1), 2, (3, 1)),
                                                     ((5, 7), 1, (5, 7)), ((1, 1), 2, (1, 1))])
def test_output_size(size, stride, expected, cpu_kernel):
    x, base_weight, poly_weight = random_inputs((1, 2) + size, dtype=torch.float32)
    assert kan_conv2d(x, base_weight, poly_weight, stride=stride).shape[2:] == expected


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis, num_functions', [('chebyshev', 4), ('rbf', 3)])
def test_kernel_matches_reference_float32(stride, basis, num_functions, cpu_kernel,
                                          assert_grads_close):
    inputs = random_inputs((3, 4, 9, 11), num_functions, dtype=torch.float32)
    out = kan_conv2d(*inputs, stride=stride, basis=basis)
    torch.testing.assert_close(out, kan_conv2d_reference(*inputs, stride=stride, basis=basis),
                               atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(out)
    assert_grads_close(grads(kan_conv2d, inputs, grad_out, stride=stride, basis=basis),
                       grads(kan_conv2d_reference, inputs, grad_out, stride=stride, basis=basis),
                       GRAD_NAMES, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('stride', [1, 2])
def test_kernel_matches_reference_bfloat16(stride, cpu_kernel, assert_grads_close):
    x, base_weight, poly_weight = random_inputs((3, 4, 9, 11), 4, dtype=torch.float32)
    x = x.detach().bfloat16().requires_grad_()
    inputs = (x, base_weight, poly_weight)
    out = kan_conv2d(*inputs, stride=stride)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, kan_conv2d_reference(*inputs, stride=stride), atol=2e-2,
                               rtol=1e-2)
    grad_out = torch.randn_like(out)
    actual = grads(kan_conv2d, inputs, grad_out, stride=stride)
    assert [g.dtype for g in actual] == [torch.bfloat16, torch.float32, torch.float32]
    expected = grads(kan_conv2d_reference, inputs, grad_out, stride=stride)
    torch.testing.assert_close(actual[0], expected[0], atol=2e-2, rtol=1e-2)
    assert_grads_close(actual[1:], expected[1:], GRAD_NAMES[1:], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('basis, num_functions', [('chebyshev', 4), ('rbf', 3)])
def test_float16_large_inputs_stay_finite(impl, basis, num_functions, cpu_kernel):
    x = ((torch.rand(2, 3, 6, 5) * 2 - 1) * 1e4).half().requires_grad_()
    base_weight = (torch.randn(9) * math.sqrt(2 / 9)).requires_grad_()
    poly_weight = (torch.randn(9, num_functions) / 6).requires_grad_()
    out = IMPLS[impl](x, base_weight, poly_weight, stride=2, basis=basis)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    for grad in torch.autograd.grad(out, (x, base_weight, poly_weight), torch.ones_like(out)):
        assert torch.isfinite(grad).all()


def test_autocast_keeps_storage_dtype_and_fp32_math(cpu_kernel):
    x, base_weight, poly_weight = random_inputs((2, 3, 6, 5), dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out_fp32 = kan_conv2d(x, base_weight, poly_weight, stride=2)
        out_bf16 = kan_conv2d(x.bfloat16(), base_weight, poly_weight, stride=2)
    assert out_fp32.dtype == torch.float32
    torch.testing.assert_close(out_fp32, kan_conv2d_reference(x, base_weight, poly_weight, 2),
                               atol=1e-5, rtol=1e-5)
    assert out_bf16.dtype == torch.bfloat16
    expected = kan_conv2d_reference(x.bfloat16().float(), base_weight, poly_weight, 2)
    torch.testing.assert_close(out_bf16, expected.bfloat16(), atol=2e-2, rtol=1e-2)


def test_backward_is_deterministic_across_thread_counts(cpu_kernel):
    inputs = random_inputs((4, 64, 13, 13), dtype=torch.float32)
    grad_out = torch.randn(4, 64, 7, 7)
    threads = torch.get_num_threads()
    try:
        first = grads(kan_conv2d, inputs, grad_out, stride=2)
        torch.set_num_threads(1)
        second = grads(kan_conv2d, inputs, grad_out, stride=2)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.skipif(not hasattr(torch.library, 'opcheck'),
                    reason=f'torch.library.opcheck needs torch >= 2.4 (this is {torch.__version__})')
@pytest.mark.parametrize('stride, basis', [(1, 0), (2, 1)])
def test_opcheck(stride, basis, cpu_kernel):
    """Schema, fake kernel and autograd registration agree with the real kernel."""
    for dtype in (torch.float32, torch.float64):
        x, base_weight, poly_weight = random_inputs((2, 3, 5, 4), 3, dtype=dtype)
        torch.library.opcheck(torch.ops.mmrkan.kan_conv2d_forward,
                              (x, base_weight, poly_weight, stride, basis))


def test_module_parameters_and_effective_weight(cpu_kernel):
    module = KANConv2d(degree=3, stride=2)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {'base_weight': (9, ), 'poly_weight': (9, 4), 'scaler': (9, )}
    assert sum(p.numel() for p in module.parameters()) == 54
    assert sum(p.numel() for p in KANConv2d(degree=2).parameters()) == 45
    assert torch.equal(module.scaler, torch.ones(9))
    with torch.no_grad():
        module.scaler.copy_(torch.arange(1.0, 10.0))
    x = torch.randn(2, 3, 7, 6)
    effective_poly_weight = module.poly_weight * torch.arange(1.0, 10.0)[:, None]
    expected = kan_conv2d(x, module.base_weight, effective_poly_weight, stride=2)
    torch.testing.assert_close(module(x), expected)


def test_module_init_statistics():
    """Authors' init: base std sqrt(2/9), poly std 1/sqrt(9 (D + 1)) (pooled over many layers)."""
    torch.manual_seed(0)
    layers = [KANConv2d(degree=3) for _ in range(400)]
    base = torch.cat([layer.base_weight.detach() for layer in layers])
    poly = torch.cat([layer.poly_weight.detach().flatten() for layer in layers])
    assert abs(base.std().item() - math.sqrt(2 / 9)) < 0.02
    assert abs(poly.std().item() - 1 / 6) < 0.01
    assert abs(base.mean().item()) < 0.02 and abs(poly.mean().item()) < 0.01


def test_rbf_module_has_a_scalar_bias(cpu_kernel):
    module = KANConv2d(basis='rbf', stride=1)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {'base_weight': (9, ), 'poly_weight': (9, 3), 'scaler': (9, ),
                      'base_bias': (1, )}
    x = torch.randn(2, 3, 5, 5)
    without_bias = module(x)
    with torch.no_grad():
        module.base_bias.fill_(0.25)
    torch.testing.assert_close(module(x), without_bias + 0.25)
    module(x).sum().backward()
    assert module.base_bias.grad.item() == pytest.approx(2 * 3 * 5 * 5)


def test_module_is_registered_in_every_task_registry():
    from mmrkan.registry import TASK_SCOPES, task_registry
    for scope in TASK_SCOPES:
        module = task_registry(scope).build(dict(type='KANConv2d', degree=2, stride=2))
        assert isinstance(module, KANConv2d) and module.poly_weight.shape == (9, 3)


def test_module_errors():
    with pytest.raises(ValueError, match=r"basis='legendre' is not supported; allowed: "
                       r"\('chebyshev', 'rbf'\)"):
        KANConv2d(basis='legendre')
    with pytest.raises(ValueError, match='stride=3 is not supported; allowed: 1, 2'):
        KANConv2d(stride=3)
    with pytest.raises(ValueError, match='degree=-1 must be an int >= 0'):
        KANConv2d(degree=-1)
    with pytest.raises(ValueError, match='num_bumps=1 must be an int >= 2'):
        KANConv2d(basis='rbf', num_bumps=1)


def test_clear_errors():
    x, base_weight, poly_weight = random_inputs((1, 2, 5, 5), dtype=torch.float32)
    with pytest.raises(ValueError, match='stride=3 is not supported; allowed: 1, 2'):
        kan_conv2d(x, base_weight, poly_weight, stride=3)
    with pytest.raises(ValueError, match=r"basis='spline' is not supported; allowed: "
                       r"\('chebyshev', 'rbf'\)"):
        kan_conv2d(x, base_weight, poly_weight, basis='spline')
    with pytest.raises(ValueError, match=r'base_weight must have shape \(9,\) .* got \(3, 3\)'):
        kan_conv2d(x, base_weight.detach().reshape(3, 3), poly_weight)
    with pytest.raises(ValueError, match=r'poly_weight must have shape \(9, K\) with K >= 1 for '
                       r"basis='chebyshev', got \(8, 4\)"):
        kan_conv2d(x, base_weight, torch.zeros(8, 4))
    with pytest.raises(ValueError, match=r"K >= 2 for basis='rbf', got \(9, 1\)"):
        kan_conv2d(x, base_weight, torch.zeros(9, 1), basis='rbf')
    with pytest.raises(ValueError, match=r'x must have shape \(N, C, H, W\) with H, W >= 1, got '
                       r'\(2, 5, 5\)'):
        kan_conv2d(x[0], base_weight, poly_weight)
    with pytest.raises(ValueError, match=r'with H, W >= 1, got \(1, 2, 0, 5\)'):
        kan_conv2d(torch.zeros(1, 2, 0, 5), base_weight, poly_weight, stride=2)
    with pytest.raises(TypeError, match='x must be a floating-point tensor, got dtype torch.uint8'):
        kan_conv2d(torch.zeros(1, 2, 5, 5, dtype=torch.uint8), base_weight, poly_weight)
    with pytest.raises(ValueError, match='same device, got x on cpu, base_weight on meta'):
        kan_conv2d(x, base_weight.detach().to('meta'), poly_weight)


def test_kernel_level_errors(cpu_kernel):
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(RuntimeError, match='stride=3 is not supported; allowed: 1, 2'):
        torch.ops.mmrkan.kan_conv2d_forward(x, torch.zeros(9), torch.zeros(9, 4), 3, 0)
    with pytest.raises(RuntimeError, match=r'with H, W >= 1, got \[1, 2, 5, 0\]'):
        torch.ops.mmrkan.kan_conv2d_forward(torch.zeros(1, 2, 5, 0), torch.zeros(9),
                                            torch.zeros(9, 4), 2, 0)
    with pytest.raises(RuntimeError, match='basis=2 is not supported'):
        torch.ops.mmrkan.kan_conv2d_forward(x, torch.zeros(9), torch.zeros(9, 4), 1, 2)
    with pytest.raises(RuntimeError, match='poly_weight must be Double for x of dtype Double'):
        torch.ops.mmrkan.kan_conv2d_forward(x.double(), torch.zeros(9).double(),
                                            torch.zeros(9, 4), 1, 0)
    with pytest.raises(RuntimeError, match="grad_out must have the output's shape"):
        torch.ops.mmrkan.kan_conv2d_backward(torch.zeros(1, 2, 5, 5), x, torch.zeros(9),
                                             torch.zeros(9, 4), 2, 0)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@cuda
@pytest.mark.parametrize('dtype, tolerance', [(torch.float32, 1e-5), (torch.float16, 1e-2),
                                              (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis, num_functions', [('chebyshev', 4), ('rbf', 3)])
def test_cuda_matches_reference(dtype, tolerance, stride, basis, num_functions,
                                assert_grads_close, cuda_kernel):
    x, base_weight, poly_weight = random_inputs((3, 5, 15, 13), num_functions,
                                                dtype=torch.float32)
    inputs = [x.detach().to('cuda', dtype).requires_grad_(),
              base_weight.detach().cuda().requires_grad_(),
              poly_weight.detach().cuda().requires_grad_()]
    out = kan_conv2d(*inputs, stride=stride, basis=basis)
    assert out.dtype == dtype
    expected = kan_conv2d_reference(*inputs, stride=stride, basis=basis)
    torch.testing.assert_close(out, expected, atol=tolerance, rtol=tolerance)
    grad_out = torch.randn_like(out)
    assert_grads_close(grads(kan_conv2d, inputs, grad_out, stride=stride, basis=basis),
                       grads(kan_conv2d_reference, inputs, grad_out, stride=stride, basis=basis),
                       GRAD_NAMES, atol=10 * tolerance, rtol=10 * tolerance)


@cuda
def test_cuda_float16_large_inputs_stay_finite(cuda_kernel):
    x = ((torch.rand(2, 3, 6, 5, device='cuda') * 2 - 1) * 1e4).half().requires_grad_()
    base_weight = (torch.randn(9, device='cuda') * math.sqrt(2 / 9)).requires_grad_()
    poly_weight = (torch.randn(9, 4, device='cuda') / 6).requires_grad_()
    out = kan_conv2d(x, base_weight, poly_weight, stride=2)
    assert torch.isfinite(out).all()
    for grad in torch.autograd.grad(out, (x, base_weight, poly_weight), torch.ones_like(out)):
        assert torch.isfinite(grad).all()


@cuda
def test_cuda_backward_is_deterministic(cuda_kernel):
    inputs = [t.detach().cuda().requires_grad_()
              for t in random_inputs((16, 256, 14, 14), dtype=torch.float32)]
    grad_out = torch.randn(16, 256, 7, 7, device='cuda')
    first = grads(kan_conv2d, inputs, grad_out, stride=2)
    second = grads(kan_conv2d, inputs, grad_out, stride=2)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
