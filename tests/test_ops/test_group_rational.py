"""Group-rational activation: kernels vs the reference, gradients, errors, module, registry."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from mmrkan.ops import GroupRational, group_rational
from mmrkan.ops.group_rational import RATIONAL_INITS, RATIONAL_ORDERS
from mmrkan.ops.reference import group_rational_reference

IMPLS = {'kernel': group_rational, 'reference': group_rational_reference}
GRAD_NAMES = ('x', 'numerator', 'denominator')


SWISH = RATIONAL_INITS[(5, 4)]['swish']


def random_inputs(shape=(3, 5, 16), groups=4, numerator_rows=1, dtype=torch.float64, seed=0,
                  order=(5, 4)):
    """x away from 0 and b away from 0, where |.| has its kink (tested separately)."""
    m, n = order
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.1), x)
    numerator = torch.randn(numerator_rows, m + 1, generator=generator, dtype=torch.float64) * 0.5
    denominator = torch.randn(groups, n, generator=generator, dtype=torch.float64) * 0.5
    denominator = torch.where(denominator.abs() < 0.05, torch.full_like(denominator, 0.1),
                              denominator)
    return [t.to(dtype).requires_grad_() for t in (x, numerator, denominator)]


def grads(fn, inputs, grad_out):
    return torch.autograd.grad(fn(*inputs), inputs, grad_out)


def naive_group_rational(x, numerator, denominator):
    """The definition, term by term: P(x) / (1 + sum_k |b_k| |x|^k) per group."""
    groups = denominator.shape[0]
    xg = x.reshape(*x.shape[:-1], groups, -1)
    out = torch.empty_like(xg)
    for group in range(groups):
        a = numerator[group if numerator.shape[0] > 1 else 0]
        b = denominator[group]
        v = xg[..., group, :]
        p = sum(a[k] * v**k for k in range(len(a)))
        q = 1 + sum(b[k].abs() * v.abs()**(k + 1) for k in range(len(b)))
        out[..., group, :] = p / q
    return out.reshape(x.shape)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('order', RATIONAL_ORDERS)
def test_matches_the_definition(impl, order, cpu_kernel):
    x, numerator, denominator = (t.detach() for t in random_inputs(groups=4, numerator_rows=4,
                                                                   order=order))
    torch.testing.assert_close(IMPLS[impl](x, numerator, denominator),
                               naive_group_rational(x, numerator, denominator))


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('order', RATIONAL_ORDERS)
@pytest.mark.parametrize('numerator_rows', [1, 4])
def test_gradcheck_float64(impl, order, numerator_rows, cpu_kernel):
    inputs = random_inputs(numerator_rows=numerator_rows, order=order)
    assert torch.autograd.gradcheck(IMPLS[impl], inputs)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('case', ['identity_denominator', 'x_at_zero'])
def test_gradient_at_zero_is_the_right_derivative(impl, case, cpu_kernel):
    """s(0) = +1: at x = 0 and b = 0 the analytic gradient is the one-sided (+eps) difference.

    identity_denominator: b = 0 (torch.abs would give these denominators a zero gradient);
    x_at_zero: b != 0 and a0 != 0, so the left and right x-derivatives at 0 differ.
    """
    fn = IMPLS[impl]
    x = torch.tensor([[0.0, 0.7, -1.3, 0.0, 2.0, 0.0, -0.4, 1.1]], dtype=torch.float64)
    if case == 'identity_denominator':
        numerator = torch.tensor([SWISH[0]], dtype=torch.float64)
        denominator = torch.zeros(2, 4, dtype=torch.float64)
    else:
        numerator = torch.tensor([[1.0, 0.5, -0.3, 0.2, 0.1, -0.05]], dtype=torch.float64)
        denominator = torch.tensor([[0.5, -0.4, 0.3, 0.2], [-0.6, 0.2, -0.1, 0.3]],
                                   dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (x, numerator, denominator)]
    analytic = torch.autograd.grad(fn(*inputs).sum(), inputs)

    eps = 1e-7
    for index, (tensor, grad) in enumerate(zip((x, numerator, denominator), analytic)):
        one_sided = torch.zeros_like(tensor)
        for i in range(tensor.numel()):
            moved = [x, numerator, denominator]
            shifted = tensor.clone()
            shifted.view(-1)[i] += eps
            moved[index] = shifted
            one_sided.view(-1)[i] = (fn(*moved).sum() - fn(x, numerator, denominator).sum()) / eps
        torch.testing.assert_close(grad, one_sided, atol=1e-5, rtol=1e-5,
                                   msg=lambda m, n=GRAD_NAMES[index]: f'{n}: {m}')
    assert (analytic[2] != 0).all(), 'every denominator coefficient must get a gradient'


@pytest.mark.parametrize('order', RATIONAL_ORDERS)
@pytest.mark.parametrize('numerator_rows', [1, 8])
def test_kernel_matches_reference_float32(order, numerator_rows, cpu_kernel, assert_grads_close):
    inputs = random_inputs((4, 7, 48), groups=8, numerator_rows=numerator_rows,
                           dtype=torch.float32, order=order)
    grad_out = torch.randn(4, 7, 48)
    torch.testing.assert_close(group_rational(*inputs), group_rational_reference(*inputs),
                               atol=1e-5, rtol=1e-5)
    assert_grads_close(grads(group_rational, inputs, grad_out),
                       grads(group_rational_reference, inputs, grad_out), GRAD_NAMES,
                       atol=1e-4, rtol=1e-4)


def test_kernel_matches_reference_bfloat16(cpu_kernel, assert_grads_close):
    x, numerator, denominator = random_inputs((4, 7, 48), groups=8, dtype=torch.float32)
    x = x.detach().bfloat16().requires_grad_()
    inputs = (x, numerator, denominator)
    grad_out = torch.randn(4, 7, 48).bfloat16()
    out = group_rational(*inputs)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, group_rational_reference(*inputs), atol=1e-2, rtol=1e-2)
    actual = grads(group_rational, inputs, grad_out)
    assert [g.dtype for g in actual] == [torch.bfloat16, torch.float32, torch.float32]
    expected = grads(group_rational_reference, inputs, grad_out)
    torch.testing.assert_close(actual[0], expected[0], atol=1e-2, rtol=1e-2)
    assert_grads_close(actual[1:], expected[1:], GRAD_NAMES[1:], atol=1e-3, rtol=1e-3)


def test_per_group_numerator_applies_each_group_its_own_coefficients(cpu_kernel):
    x, numerator, denominator = random_inputs((2, 3, 12), groups=3, numerator_rows=3)
    out = group_rational(x, numerator, denominator)
    for group in range(3):
        channels = slice(4 * group, 4 * group + 4)
        expected = group_rational(x[..., channels], numerator[group:group + 1],
                                  denominator[group:group + 1])
        torch.testing.assert_close(out[..., channels], expected)


def test_shared_numerator_gradient_sums_over_groups(cpu_kernel):
    shared = random_inputs((2, 3, 12), groups=3, numerator_rows=1)
    per_group = [shared[0], shared[1].detach().repeat(3, 1).requires_grad_(), shared[2]]
    grad_out = torch.randn(2, 3, 12, dtype=torch.float64)
    grad_shared = grads(group_rational, shared, grad_out)[1]
    grad_per_group = grads(group_rational, per_group, grad_out)[1]
    torch.testing.assert_close(grad_shared, grad_per_group.sum(0, keepdim=True))


@pytest.mark.parametrize('impl', IMPLS)
def test_float16_large_inputs_stay_finite(impl, cpu_kernel):
    """x^5 of |x| = 1e4 overflows fp16: the math must run in fp32."""
    x = ((torch.rand(4, 5, 16) * 2 - 1) * 1e4).half().requires_grad_()
    numerator = torch.tensor([SWISH[0]], requires_grad=True)
    denominator = torch.tensor([SWISH[1]]).repeat(4, 1).requires_grad_()
    out = IMPLS[impl](x, numerator, denominator)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    for grad in torch.autograd.grad(out, (x, numerator, denominator), torch.ones_like(out)):
        assert torch.isfinite(grad).all()


def test_autocast_keeps_storage_dtype_and_fp32_math(cpu_kernel):
    x, numerator, denominator = random_inputs((2, 5, 16), dtype=torch.float32)
    expected = group_rational_reference(x, numerator, denominator)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out_fp32 = group_rational(x, numerator, denominator)
        out_bf16 = group_rational(x.bfloat16(), numerator, denominator)
    assert out_fp32.dtype == torch.float32
    torch.testing.assert_close(out_fp32, expected, atol=1e-6, rtol=1e-6)
    assert out_bf16.dtype == torch.bfloat16
    expected_bf16 = group_rational_reference(x.bfloat16().float(), numerator, denominator)
    torch.testing.assert_close(out_bf16, expected_bf16.bfloat16(), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize('order', RATIONAL_ORDERS)
def test_backward_is_deterministic_across_thread_counts(order, cpu_kernel):
    inputs = random_inputs((64, 9, 256), groups=8, dtype=torch.float32, order=order)
    grad_out = torch.randn(64, 9, 256)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = grads(group_rational, inputs, grad_out)
        torch.set_num_threads(1)
        second = grads(group_rational, inputs, grad_out)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.skipif(not hasattr(torch.library, 'opcheck'),
                    reason=f'torch.library.opcheck needs torch >= 2.4 (this is {torch.__version__})')
@pytest.mark.parametrize('order', RATIONAL_ORDERS)
def test_opcheck(order, cpu_kernel):
    """Schema, fake kernel and autograd registration agree with the real kernel."""
    for dtype in (torch.float32, torch.float64):
        x, numerator, denominator = random_inputs((3, 16), groups=4, dtype=dtype, order=order)
        torch.library.opcheck(torch.ops.mmrkan.group_rational_forward,
                              (x, numerator, denominator))


# Maximum |F - target| on [-3, 3] of each fitted init (docs/ops.md); identity is exact.
FIT_TOLERANCES = {
    (3, 2): dict(swish=7e-3, gelu=2.2e-2),
    (5, 4): dict(swish=1e-5, gelu=5e-3),
    (7, 6): dict(swish=5e-8, gelu=2.2e-3),  # swish: the fp32 rounding of the coefficients
}


@pytest.mark.parametrize('order', RATIONAL_ORDERS)
@pytest.mark.parametrize('init, target', [('identity', lambda x: x), ('swish', F.silu),
                                          ('gelu', F.gelu)])
def test_module_inits_match_their_functions(order, init, target, cpu_kernel):
    x = torch.linspace(-3, 3, 601, dtype=torch.float64).reshape(-1, 1).repeat(1, 8)
    module = GroupRational(num_groups=8, init=init, order=order).double()
    error = (module(x) - target(x)).abs().max().item()
    tolerance = 0.0 if init == 'identity' else FIT_TOLERANCES[order][init]
    assert error <= tolerance, f'{init} init of order {order} deviates by {error} on [-3, 3]'
    assert init == 'identity' or error > tolerance / 10, 'the tolerance is loose: tighten it'


def test_module_parameters_match_official_checkpoints():
    module = GroupRational(num_groups=8, init='swish')
    assert module.order == (5, 4)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {'weight_numerator': (1, 6), 'weight_denominator': (8, 4)}
    torch.testing.assert_close(module.weight_denominator[5], torch.tensor(SWISH[1]))


@pytest.mark.parametrize('order', RATIONAL_ORDERS)
def test_module_order_sets_the_coefficient_shapes(order):
    m, n = order
    module = GroupRational(num_groups=4, init='gelu', order=list(order))  # lists from configs
    assert module.order == order
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {'weight_numerator': (1, m + 1), 'weight_denominator': (4, n)}
    assert (f'order={order}' in repr(module)) == (order != (5, 4))


def test_module_is_registered_in_every_task_registry():
    from mmrkan.registry import TASK_SCOPES, task_registry
    for scope in TASK_SCOPES:
        module = task_registry(scope).build(dict(type='GroupRational', num_groups=2,
                                                 init='identity'))
        assert isinstance(module, GroupRational) and module.num_groups == 2


def test_module_errors():
    with pytest.raises(ValueError, match=r"init='relu' is not supported; allowed: \('identity'"):
        GroupRational(init='relu')
    with pytest.raises(ValueError, match=r'order=\(4, 4\) is not supported; allowed: \(3, 2\), '
                       r'\(5, 4\), \(7, 6\)'):
        GroupRational(order=(4, 4))
    with pytest.raises(ValueError, match='num_groups=0 must be a positive int'):
        GroupRational(num_groups=0)
    with pytest.raises(ValueError, match=r'g = 8 \(num_groups.*must divide the channels C = 12'):
        GroupRational(num_groups=8)(torch.randn(2, 12))


def test_clear_errors():
    x, numerator, denominator = random_inputs((2, 12), groups=4, dtype=torch.float32)
    with pytest.raises(ValueError, match=r'g = 5 .* must divide the channels C = 12'):
        group_rational(x, numerator, torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r'numerator must have shape \(1, m \+ 1\) or '
                       r'\(g, m \+ 1\) with g = denominator.shape\[0\] = 4, got \(2, 6\)'):
        group_rational(x, torch.zeros(2, 6), denominator)
    with pytest.raises(ValueError, match=r'order \(m, n\) = \(4, 4\) \(numerator \(1, 5\), '
                       r'denominator \(4, 4\)\) is not supported; allowed: \(3, 2\), \(5, 4\), '
                       r'\(7, 6\)'):
        group_rational(x, torch.zeros(1, 5), denominator)
    with pytest.raises(ValueError, match=r'order \(m, n\) = \(5, 3\)'):
        group_rational(x, numerator, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r'denominator must have shape \(g, n\) .* got \(4,\)'):
        group_rational(x, numerator, torch.zeros(4))
    with pytest.raises(TypeError, match='x must be a floating-point tensor, got dtype torch.int64'):
        group_rational(torch.ones(2, 12, dtype=torch.int64), numerator, denominator)
    with pytest.raises(TypeError, match='denominator must be a floating-point tensor'):
        group_rational(x, numerator, torch.zeros(4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match='same device, got x on cpu, numerator on meta'):
        group_rational(x, numerator.detach().to('meta'), denominator)


def test_kernel_level_errors(cpu_kernel):
    """The C++ checks guard direct callers of torch.ops.mmrkan (and the CUDA kernels)."""
    x = torch.randn(2, 12)
    with pytest.raises(RuntimeError, match='numerator must be Float for x of dtype Float, got '
                       'Half'):
        torch.ops.mmrkan.group_rational_forward(x, torch.zeros(1, 6).half(), torch.zeros(4, 4))
    with pytest.raises(RuntimeError, match='channels C = 12 must be divisible by .* g = 5'):
        torch.ops.mmrkan.group_rational_forward(x, torch.zeros(1, 6), torch.zeros(5, 4))
    with pytest.raises(RuntimeError, match="grad_out must have the output's shape"):
        torch.ops.mmrkan.group_rational_backward(torch.zeros(2, 6), x, torch.zeros(1, 6),
                                                 torch.zeros(4, 4))
    with pytest.raises(RuntimeError, match=r'order \(m, n\) = \(7, 4\) .* is not supported; '
                       r'allowed: \(3, 2\), \(5, 4\), \(7, 6\)'):
        torch.ops.mmrkan.group_rational_forward(x, torch.zeros(1, 8), torch.zeros(4, 4))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@cuda
@pytest.mark.parametrize('dtype, tolerance', [(torch.float32, 1e-5), (torch.float16, 1e-2),
                                              (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize('numerator_rows', [1, 8])
@pytest.mark.parametrize('order', RATIONAL_ORDERS)
def test_cuda_matches_reference(dtype, tolerance, numerator_rows, order, assert_grads_close,
                                cuda_kernel):
    """Every order runs the CUDA kernels (a fallback to the reference would warn)."""
    x, numerator, denominator = random_inputs((4, 33, 96), groups=8, numerator_rows=numerator_rows,
                                              dtype=torch.float32, order=order)
    inputs = [x.detach().to('cuda', dtype).requires_grad_(),
              numerator.detach().cuda().requires_grad_(),
              denominator.detach().cuda().requires_grad_()]
    grad_out = torch.randn(4, 33, 96, device='cuda').to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = group_rational(*inputs)
    assert out.dtype == dtype
    torch.testing.assert_close(out, group_rational_reference(*inputs), atol=tolerance,
                               rtol=tolerance)
    actual = grads(group_rational, inputs, grad_out)
    expected = grads(group_rational_reference, inputs, grad_out)
    assert_grads_close(actual, expected, GRAD_NAMES, atol=10 * tolerance, rtol=10 * tolerance)


@cuda
def test_cuda_float16_large_inputs_stay_finite(cuda_kernel):
    x = ((torch.rand(4, 5, 16, device='cuda') * 2 - 1) * 1e4).half().requires_grad_()
    numerator = torch.tensor([SWISH[0]], device='cuda', requires_grad=True)
    denominator = torch.tensor([SWISH[1]], device='cuda').repeat(4, 1)
    denominator.requires_grad_()
    out = group_rational(x, numerator, denominator)
    assert torch.isfinite(out).all()
    for grad in torch.autograd.grad(out, (x, numerator, denominator), torch.ones_like(out)):
        assert torch.isfinite(grad).all()


@cuda
def test_cuda_backward_is_deterministic(cuda_kernel):
    inputs = [t.detach().cuda().requires_grad_()
              for t in random_inputs((64, 197, 256), groups=8, dtype=torch.float32)]
    grad_out = torch.randn(64, 197, 256, device='cuda')
    first = grads(group_rational, inputs, grad_out)
    second = grads(group_rational, inputs, grad_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize('order', RATIONAL_ORDERS)
@pytest.mark.parametrize('per_group_numerator', [False, True])
def test_random_init_draws_xavier_uniform_coefficients(order, per_group_numerator):
    m, n = order
    torch.manual_seed(0)
    module = GroupRational(num_groups=16, init='random', order=order,
                           per_group_numerator=per_group_numerator)
    numerator_rows = 16 if per_group_numerator else 1
    for param, (rows, cols) in ((module.weight_numerator, (numerator_rows, m + 1)),
                                (module.weight_denominator, (16, n))):
        assert param.shape == (rows, cols)
        bound = math.sqrt(6 / (rows + cols))  # xavier_uniform_, gain 1, fans from the shape
        assert param.abs().max() <= bound and param.abs().max() > bound / 2
    assert len(module.weight_denominator.unique()) == module.weight_denominator.numel()
    assert not torch.equal(module.weight_denominator,
                           GroupRational(16, init='random', order=order).weight_denominator)


@pytest.mark.parametrize('init', ['identity', 'swish', 'gelu'])
def test_per_group_numerators_start_equal_and_compute_the_shared_rational(init, cpu_kernel):
    shared = GroupRational(num_groups=4, init=init, order=(3, 2))
    per_group = GroupRational(num_groups=4, init=init, order=(3, 2), per_group_numerator=True)
    assert per_group.weight_numerator.shape == (4, 4)
    torch.testing.assert_close(per_group.weight_numerator, shared.weight_numerator.expand(4, -1))
    x = torch.randn(3, 8)
    torch.testing.assert_close(per_group(x), shared(x))
    with torch.no_grad():
        per_group.weight_numerator[2].mul_(2)  # groups own their numerators: only group 2 moves
    changed = (per_group(x) != shared(x)).any(0)
    assert changed.tolist() == [False] * 4 + [True] * 2 + [False] * 2
    assert 'per_group_numerator=True' in repr(per_group) and 'per_group' not in repr(shared)
