"""KAN convolution: every family and option against an independent re-implementation of the
authors' layer, gradients, conventions, dtypes, errors, module, registry."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from mmrkan.ops import KANConv2d, kan_conv2d
from mmrkan.ops.kan_conv_options import NORMALIZATION_CODES
from mmrkan.ops.reference import b_spline_basis, basis_functions, kan_conv2d_reference

IMPLS = {'kernel': kan_conv2d, 'reference': kan_conv2d_reference}
GRAD_NAMES = ('x', 'base_weight', 'poly_weight', 'norm_scale')
NORMALIZATIONS = tuple(NORMALIZATION_CODES)
# (basis, K, basis-specific arguments): every family, with non-default settings too.
FAMILIES = [
    ('chebyshev', 4, {}),
    ('chebyshev', 1, {}),  # degree 0: T_0 only
    ('legendre', 4, {}),
    ('jacobi', 4, {}),
    ('jacobi', 5, dict(jacobi_alpha=1.5, jacobi_beta=-0.3)),
    ('hermite', 4, {}),
    ('rbf', 3, {}),
    ('rbf', 2, dict(grid_range=(-2.0, 1.0))),
    ('b_spline', 6, dict(spline_order=3)),
    ('b_spline', 4, dict(spline_order=2, grid_range=(-1.5, 2.0))),
    # Order 1 has derivative jumps at the knots: a grid without knots at 0 (padding) and +-1
    # (min-max's extreme taps, where fp32 and fp64 would take different sides).
    ('b_spline', 3, dict(spline_order=1, grid_range=(-0.8, 1.3))),
]
FAMILY_IDS = [f'{basis}-K{k}' + ('-' + '-'.join(f'{v}' for v in kw.values()) if kw else '')
              for basis, k, kw in FAMILIES]


# ------------------------------------------------------------------------ the authors' layer
def authors_polynomials(t, num_functions, basis, alpha=0.5, beta=0.5):
    """The recurrences of the authors' ChebyshevKANLinear, written out again."""
    if basis == 'chebyshev':
        polys = [torch.ones_like(t), t]
        for _ in range(2, num_functions):
            polys.append(2 * t * polys[-1] - polys[-2])
    elif basis == 'legendre':
        polys = [torch.ones_like(t), t]
        for n in range(2, num_functions):
            polys.append(((2 * (n - 1) + 1) * t * polys[-1] - (n - 1) * polys[-2]) / n)
    elif basis == 'hermite':
        polys = [torch.ones_like(t), 2 * t]
        for n in range(2, num_functions):
            polys.append(2 * t * polys[-1] - 2 * (n - 1) * polys[-2])
    else:
        polys = [torch.ones_like(t), 0.5 * (alpha - beta + (alpha + beta + 2) * t)]
        for n in range(2, num_functions):
            a = (2 * n + alpha + beta - 1) * ((2 * n + alpha + beta) *
                                              (2 * n + alpha + beta - 2) * t + alpha**2 - beta**2)
            b = 2 * (n + alpha - 1) * (n + beta - 1) * (2 * n + alpha + beta)
            c = 2 * n * (n + alpha + beta) * (2 * n + alpha + beta - 2)
            polys.append((a * polys[-1] - b * polys[-2]) / c)
    return torch.stack(polys[:num_functions], dim=-1)


def authors_b_splines(x, grid_size, spline_order, grid_range):
    """efficient-KAN's KANLinear.b_splines with its grid buffer, for one input of 9 features."""
    h = (grid_range[1] - grid_range[0]) / grid_size
    grid = (torch.arange(-spline_order, grid_size + spline_order + 1, dtype=x.dtype) * h +
            grid_range[0]).expand(9, -1)
    x = x.unsqueeze(-1)
    bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
    for k in range(1, spline_order + 1):
        bases = ((x - grid[:, :-(k + 1)]) / (grid[:, k:-1] - grid[:, :-(k + 1)]) * bases[:, :, :-1]
                 ) + ((grid[:, k + 1:] - x) / (grid[:, k + 1:] - grid[:, 1:(-k)]) * bases[:, :, 1:])
    return bases


def authors_kan_conv2d(x, base_weight, poly_weight, stride=1, basis='chebyshev',
                       normalization=None, base_activation='identity', norm_scale=None,
                       jacobi_alpha=0.5, jacobi_beta=0.5, grid_range=(-1.0, 1.0),
                       spline_order=3):
    """The authors' KAN convolution: unfold the zero-padded input into the 9 taps of every
    window, then their KAN linear layer (9 -> 1) on each window (normalisation, basis, base
    linear without bias)."""
    if normalization is None:
        normalization = 'tanh' if basis in ('chebyshev', 'legendre', 'jacobi', 'hermite') else 'none'
    n, c, h, w = x.shape
    out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
    windows = F.unfold(x.reshape(n * c, 1, h, w), 3, padding=1, stride=stride)
    rows = windows.transpose(1, 2).reshape(-1, 9)  # (N C Hout Wout, 9 taps)
    if normalization == 'tanh':
        t = torch.tanh(rows)
    elif normalization == 'arctan':
        t = (2 / math.pi) * torch.atan((rows - rows.mean(dim=1, keepdim=True)) * norm_scale)
    elif normalization == 'min-max':
        low, high = rows.min(dim=1, keepdim=True)[0], rows.max(dim=1, keepdim=True)[0]
        t = 2 * (rows - low) / (high - low + 1e-8) - 1
    elif normalization == 'standardization':
        t = (rows - rows.mean(dim=1, keepdim=True)) / (rows.std(dim=1, keepdim=True) + 1e-8)
    else:
        t = rows
    num_functions = poly_weight.shape[1]
    if basis == 'rbf':
        grid = torch.linspace(grid_range[0], grid_range[1], num_functions, dtype=x.dtype)
        denominator = (grid_range[1] - grid_range[0]) / (num_functions - 1)
        bases = torch.exp(-((t[..., None] - grid) / denominator)**2)
    elif basis == 'b_spline':
        bases = authors_b_splines(t, num_functions - spline_order, spline_order, grid_range)
    else:
        bases = authors_polynomials(t, num_functions, basis, jacobi_alpha, jacobi_beta)
    base_input = rows if base_activation == 'identity' else F.silu(rows)
    out = F.linear(base_input, base_weight[None]) + torch.einsum('bik,ik->b', bases,
                                                                 poly_weight)[:, None]
    return out.reshape(n, c, out_h, out_w)


# ------------------------------------------------------------------------------------ helpers
def random_inputs(shape=(2, 3, 5, 6), num_functions=4, normalization='tanh', dtype=torch.float64,
                  seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    base_weight = torch.randn(9, generator=generator, dtype=torch.float64)
    poly_weight = torch.randn(9, num_functions, generator=generator, dtype=torch.float64) * 0.3
    tensors = [x, base_weight, poly_weight]
    if normalization == 'arctan':
        tensors.append(torch.tensor([0.7], dtype=torch.float64))
    return [t.to(dtype).requires_grad_() for t in tensors]


def call(fn, inputs, **kwargs):
    """fn(x, base_weight, poly_weight, norm_scale=..., **kwargs)."""
    norm_scale = inputs[3] if len(inputs) > 3 else None
    return fn(*inputs[:3], norm_scale=norm_scale, **kwargs)


def grads(fn, inputs, grad_out, **kwargs):
    return torch.autograd.grad(call(fn, inputs, **kwargs), inputs, grad_out)


# ------------------------------------------------------------------ values and gradients
def grads_or_zeros(out, inputs, grad_out):
    """Gradients of every input; zeros for inputs the output does not use (with K = 1, only
    T_0 = 1, the normalisation and its arctan scale do not reach the output)."""
    found = torch.autograd.grad(out, inputs, grad_out, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(found, inputs)]


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('stride, base_activation', [(1, 'identity'), (2, 'silu')])
@pytest.mark.parametrize('normalization', NORMALIZATIONS)
@pytest.mark.parametrize('basis, num_functions, extra', FAMILIES, ids=FAMILY_IDS)
def test_matches_the_authors_layer_float32(impl, stride, base_activation, normalization, basis,
                                           num_functions, extra, cpu_kernel):
    """fp32 forward and every gradient against the authors' formulas in float64, to 1e-5
    relative to each tensor's largest value (fp32 sums of terms of ~10 lose ~1e-5 of them when
    they cancel, e.g. the Jacobi gradients of standardised windows)."""
    inputs = random_inputs(num_functions=num_functions, normalization=normalization,
                           dtype=torch.float32)
    kwargs = dict(stride=stride, basis=basis, normalization=normalization,
                  base_activation=base_activation, **extra)
    out = call(IMPLS[impl], inputs, **kwargs)
    assert out.dtype == torch.float32
    exact = [t.detach().double().requires_grad_() for t in inputs]
    expected = call(authors_kan_conv2d, exact, **kwargs)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    actual = [out] + grads_or_zeros(out, inputs, grad_out)
    wanted = [expected] + grads_or_zeros(expected, exact, grad_out.double())
    for name, got, want in zip(('output', ) + GRAD_NAMES, actual, wanted):
        assert got.dtype == torch.float32
        scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5 * scale,
                                   msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('base_activation', ['identity', 'silu'])
@pytest.mark.parametrize('normalization', NORMALIZATIONS)
@pytest.mark.parametrize('basis, num_functions, extra', FAMILIES, ids=FAMILY_IDS)
def test_kernel_gradcheck_float64(stride, base_activation, normalization, basis, num_functions,
                                  extra, cpu_kernel):
    inputs = random_inputs((1, 2, 4, 3), num_functions, normalization)
    kwargs = dict(stride=stride, basis=basis, normalization=normalization,
                  base_activation=base_activation, **extra)
    assert torch.autograd.gradcheck(lambda *t: call(kan_conv2d, t, **kwargs), inputs)


@pytest.mark.parametrize('normalization', NORMALIZATIONS)
@pytest.mark.parametrize('basis, num_functions, extra', FAMILIES[::2], ids=FAMILY_IDS[::2])
def test_reference_gradcheck_float64(normalization, basis, num_functions, extra):
    inputs = random_inputs((1, 2, 4, 3), num_functions, normalization)
    kwargs = dict(stride=2, basis=basis, normalization=normalization, base_activation='silu',
                  **extra)
    assert torch.autograd.gradcheck(lambda *t: call(kan_conv2d_reference, t, **kwargs), inputs)


def naive_kan_conv2d(x, base_weight, poly_weight, stride, basis):
    """The definition, tap by tap: pad x with zeros, then evaluate the basis (pixelwise)."""
    padded = F.pad(x, (1, 1, 1, 1))
    t = torch.tanh(padded) if basis == 'chebyshev' else padded
    functions = basis_functions(t, poly_weight.shape[1], basis)
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
@pytest.mark.parametrize('basis, num_functions', [('chebyshev', 4), ('rbf', 3)])
def test_matches_the_definition(impl, stride, basis, num_functions, cpu_kernel):
    x, base_weight, poly_weight = (t.detach() for t in random_inputs((2, 2, 5, 4), num_functions))
    torch.testing.assert_close(
        IMPLS[impl](x, base_weight, poly_weight, stride=stride, basis=basis),
        naive_kan_conv2d(x, base_weight, poly_weight, stride, basis))


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


@pytest.mark.parametrize('impl', IMPLS)
def test_window_statistics_include_the_padded_taps(impl, cpu_kernel):
    """min-max on a positive image: the corner window's minimum is a padded 0, so its interior
    tap maps to 2 x / (max + eps) - 1; with T_1 of the centre tap only the output is t itself."""
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64) + 1
    base_weight = torch.zeros(9, dtype=torch.float64)
    poly_weight = torch.zeros(9, 2, dtype=torch.float64)
    poly_weight[4, 1] = 1.0
    out = IMPLS[impl](x, base_weight, poly_weight, normalization='min-max')
    corner = x[0, 0, :2, :2]
    expected = 2 * x[0, 0, 0, 0] / (corner.max() + 1e-8) - 1
    torch.testing.assert_close(out[0, 0, 0, 0], expected)


# -------------------------------------------------------------------------- conventions
@pytest.mark.parametrize('basis, num_functions', [('chebyshev', 4), ('b_spline', 5)])
@pytest.mark.parametrize('normalization', ['min-max', 'standardization'])
def test_kernel_and_reference_agree_on_degenerate_windows(basis, num_functions, normalization,
                                                          cpu_kernel):
    """Ties in min/max (the first tap takes the min/max gradient) and zero standard deviation
    (the std's gradient is 0): constant images (all windows constant, padded zeros included)
    and an image whose windows hold repeated values."""
    generator = torch.Generator().manual_seed(0)
    repeated = torch.randint(0, 3, (1, 2, 4, 5), generator=generator).double() * 0.5
    for x in (torch.zeros(1, 2, 4, 5, dtype=torch.float64), repeated):
        inputs = [x.clone().requires_grad_()] + random_inputs(num_functions=num_functions)[1:]
        extra = dict(spline_order=2) if basis == 'b_spline' else {}
        kwargs = dict(basis=basis, normalization=normalization, **extra)
        out = call(kan_conv2d, inputs, **kwargs)
        expected = call(kan_conv2d_reference, inputs, **kwargs)
        torch.testing.assert_close(out, expected)
        grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        for got, want in zip(torch.autograd.grad(out, inputs, grad_out),
                             torch.autograd.grad(expected, inputs, grad_out)):
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * want.abs().max())


@pytest.mark.parametrize('impl', IMPLS)
def test_min_max_ties_send_the_gradient_to_the_first_tap(impl, cpu_kernel):
    """One window (1x1 input, 8 padded zeros): with x = 0 all 9 taps tie; t = -1 everywhere.
    d/dx of the centre tap's t: the centre is tap 4, not the first minimum (tap 0, a padded
    zero), so dt_4/dx_4 = 2r; with x = 0 it is also not the first maximum."""
    x = torch.zeros(1, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    base_weight = torch.zeros(9, dtype=torch.float64)
    poly_weight = torch.zeros(9, 2, dtype=torch.float64)
    poly_weight[4, 1] = 1.0  # y = t_4
    out = IMPLS[impl](x, base_weight, poly_weight, normalization='min-max')
    assert out.item() == -1
    (grad, ) = torch.autograd.grad(out.sum(), x)
    assert grad.item() == pytest.approx(2 / 1e-8)
    # A positive centre is the (only) maximum: t_4 = 2 x / (x + eps) - 1, d/dx = 2 eps / (x+eps)^2
    x = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64, requires_grad=True)
    (grad, ) = torch.autograd.grad(IMPLS[impl](x, base_weight, poly_weight,
                                               normalization='min-max').sum(), x)
    assert grad.item() == pytest.approx(2e-8 / (0.5 + 1e-8)**2)


@pytest.mark.parametrize('impl', IMPLS)
def test_standardization_of_a_constant_window_has_the_limit_gradient(impl, cpu_kernel):
    """x = 0 (all windows constant, std 0): t = 0 and dt_p/dx_q = (delta_pq - 1/9) / eps."""
    x = torch.zeros(1, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    base_weight = torch.zeros(9, dtype=torch.float64)
    poly_weight = torch.zeros(9, 2, dtype=torch.float64)
    poly_weight[4, 1] = 1.0  # y = t_4
    out = IMPLS[impl](x, base_weight, poly_weight, normalization='standardization')
    assert out.item() == 0
    (grad, ) = torch.autograd.grad(out.sum(), x)
    assert grad.item() == pytest.approx((1 - 1 / 9) / 1e-8)


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


def test_float32_silu_and_arctan_are_accurate_over_a_wide_range(cpu_kernel):
    """SiLU (base term) and atan (arctan normalisation) of the fp32 kernels, over a wide range:
    a 1x1 input is one window whose other taps are padded zeros."""
    values = torch.cat([torch.linspace(-100, 100, 2001),
                        torch.tensor([0.0, -0.0, 0.41, 2.42, 1e4, -1e30, 1e30])])
    x = values.reshape(-1, 1, 1, 1)
    base_weight = torch.zeros(9)
    base_weight[4] = 1.0
    out = kan_conv2d(x, base_weight, torch.zeros(9, 1), base_activation='silu')
    torch.testing.assert_close(out.flatten(), F.silu(values.double()).float(), atol=1e-6,
                               rtol=1e-6)
    poly_weight = torch.zeros(9, 2)
    poly_weight[4, 1] = 1.0  # y = t_4 = (2 / pi) atan((x - x / 9) s)
    scale = torch.tensor([1.0])
    out = kan_conv2d(x / 10, torch.zeros(9), poly_weight, normalization='arctan',
                     norm_scale=scale)
    expected = (2 / math.pi) * torch.atan(values.double() / 10 * 8 / 9)
    torch.testing.assert_close(out.flatten(), expected.float(), atol=3e-7, rtol=0)
    for kwargs in (dict(base_activation='silu'), dict(normalization='arctan', norm_scale=scale)):
        nan = torch.full((1, 1, 1, 1), math.nan)
        assert torch.isnan(kan_conv2d(nan, base_weight, poly_weight, **kwargs)).all()


@pytest.mark.parametrize('impl', IMPLS)
def test_b_spline_is_zero_outside_its_grid_and_nan_for_nan(impl, cpu_kernel):
    """Order 2 on 3 intervals of [-1, 1]: support [-1 - 2h, 1 + 2h], h = 2/3."""
    poly_weight = torch.zeros(9, 5)
    poly_weight[4] = 1.0  # sum of the centre tap's bases: 1 inside [-1, 1] (partition of unity)
    kwargs = dict(basis='b_spline', spline_order=2)
    x = torch.tensor([-2.34, 2.34, 1e30, -0.7, 0.0, 0.99]).reshape(-1, 1, 1, 1)
    out = IMPLS[impl](x, torch.zeros(9), poly_weight, **kwargs).flatten()
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    for bad in (math.nan, math.inf):
        assert torch.isnan(IMPLS[impl](torch.full((1, 1, 1, 1), bad), torch.zeros(9),
                                       poly_weight, **kwargs)).all()


# ------------------------------------------------------------------ shapes, dtypes, threads
@pytest.mark.parametrize('size, stride, expected', [((7, 6), 2, (4, 3)), ((5, 1), 2, (3, 1)),
                                                     ((5, 7), 1, (5, 7)), ((1, 1), 2, (1, 1))])
@pytest.mark.parametrize('normalization', ['tanh', 'standardization'])
def test_output_size(size, stride, expected, normalization, cpu_kernel):
    x, base_weight, poly_weight = random_inputs((1, 2) + size, dtype=torch.float32)
    out = kan_conv2d(x, base_weight, poly_weight, stride=stride, normalization=normalization)
    assert out.shape[2:] == expected


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis, num_functions, normalization', [
    ('chebyshev', 4, 'tanh'), ('rbf', 3, 'none'), ('b_spline', 6, 'none'),
    ('legendre', 4, 'arctan'), ('hermite', 3, 'standardization'), ('jacobi', 4, 'min-max')])
def test_kernel_matches_reference_on_larger_planes(stride, basis, num_functions, normalization,
                                                   cpu_kernel, assert_grads_close):
    """Planes split into several chunks (23 x 29 planes) and several planes per chunk (3 x 4)."""
    for shape in ((2, 3, 23, 29), (3, 40, 3, 4)):
        inputs = random_inputs(shape, num_functions, normalization, dtype=torch.float32)
        kwargs = dict(stride=stride, basis=basis, normalization=normalization)
        out = call(kan_conv2d, inputs, **kwargs)
        torch.testing.assert_close(out, call(kan_conv2d_reference, inputs, **kwargs), atol=1e-5,
                                   rtol=1e-5)
        grad_out = torch.randn_like(out)
        assert_grads_close(grads(kan_conv2d, inputs, grad_out, **kwargs),
                           grads(kan_conv2d_reference, inputs, grad_out, **kwargs), GRAD_NAMES,
                           atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('normalization', ['tanh', 'standardization'])
def test_kernel_matches_reference_bfloat16(stride, normalization, cpu_kernel, assert_grads_close):
    x, base_weight, poly_weight = random_inputs((3, 4, 9, 11), 4, dtype=torch.float32)
    x = x.detach().bfloat16().requires_grad_()
    inputs = (x, base_weight, poly_weight)
    kwargs = dict(stride=stride, normalization=normalization)
    out = kan_conv2d(*inputs, **kwargs)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, kan_conv2d_reference(*inputs, **kwargs), atol=2e-2,
                               rtol=1e-2)
    grad_out = torch.randn_like(out)
    actual = grads(kan_conv2d, inputs, grad_out, **kwargs)
    assert [g.dtype for g in actual] == [torch.bfloat16, torch.float32, torch.float32]
    expected = grads(kan_conv2d_reference, inputs, grad_out, **kwargs)
    torch.testing.assert_close(actual[0], expected[0], atol=2e-2, rtol=1e-2)
    assert_grads_close(actual[1:], expected[1:], GRAD_NAMES[1:], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('basis, num_functions, normalization', [
    ('chebyshev', 4, 'tanh'), ('rbf', 3, 'none'), ('b_spline', 6, 'none'), ('legendre', 4, 'arctan'),
    ('chebyshev', 4, 'min-max')])
def test_float16_large_inputs_stay_finite(impl, basis, num_functions, normalization, cpu_kernel):
    x = ((torch.rand(2, 3, 6, 5) * 2 - 1) * 1e4).half().requires_grad_()
    base_weight = (torch.randn(9) * math.sqrt(2 / 9)).requires_grad_()
    poly_weight = (torch.randn(9, num_functions) / 6).requires_grad_()
    inputs = [x, base_weight, poly_weight]
    if normalization == 'arctan':
        inputs.append(torch.tensor([0.1], requires_grad=True))
    out = call(IMPLS[impl], inputs, stride=2, basis=basis, normalization=normalization)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    for grad in torch.autograd.grad(out, inputs, torch.ones_like(out)):
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


@pytest.mark.parametrize('kwargs', [
    dict(), dict(basis='b_spline', normalization='arctan', base_activation='silu'),
    dict(basis='rbf', normalization='standardization')], ids=['chebyshev', 'b_spline', 'rbf'])
def test_backward_is_deterministic_across_thread_counts(kwargs, cpu_kernel):
    inputs = random_inputs((4, 64, 13, 13), num_functions=6,
                           normalization=kwargs.get('normalization'), dtype=torch.float32)
    grad_out = torch.randn(4, 64, 7, 7)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = grads(kan_conv2d, inputs, grad_out, stride=2, **kwargs)
        torch.set_num_threads(1)
        second = grads(kan_conv2d, inputs, grad_out, stride=2, **kwargs)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_empty_batch(cpu_kernel):
    inputs = random_inputs((0, 3, 5, 6), normalization='arctan', dtype=torch.float32)
    out = call(kan_conv2d, inputs, normalization='arctan', stride=2)
    assert out.shape == (0, 3, 3, 3)
    grad_x, grad_base, grad_poly, grad_scale = grads(kan_conv2d, inputs, torch.zeros_like(out),
                                                     normalization='arctan', stride=2)
    assert grad_x.shape == (0, 3, 5, 6) and not grad_base.any() and not grad_poly.any()
    assert grad_scale.item() == 0


@pytest.mark.skipif(not hasattr(torch.library, 'opcheck'),
                    reason=f'torch.library.opcheck needs torch >= 2.4 (this is {torch.__version__})')
@pytest.mark.parametrize('stride, codes, params', [(1, (0, 1, 0), []), (2, (1, 0, 1), [-1.0, 1.0]),
                                                   (1, (3, 2, 1), [0.5, 0.5]),
                                                   (2, (5, 3, 0), [-1.0, 1.0, 2.0])])
def test_opcheck(stride, codes, params, cpu_kernel):
    """Schema, fake kernel and autograd registration agree with the real kernel."""
    for dtype in (torch.float32, torch.float64):
        x, base_weight, poly_weight, norm_scale = random_inputs((2, 3, 5, 4), 3, 'arctan',
                                                                dtype=dtype)
        torch.library.opcheck(torch.ops.mmrkan.kan_conv2d_forward,
                              (x, base_weight, poly_weight, norm_scale, stride, *codes, params))


# ------------------------------------------------------------------------------------ module
def parameter_shapes(module):
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def test_module_defaults_are_unchanged(cpu_kernel):
    """Today's users: chebyshev, tanh, degree 3, the same parameters (checkpoints load)."""
    module = KANConv2d(degree=3, stride=2)
    assert parameter_shapes(module) == {'base_weight': (9, ), 'poly_weight': (9, 4),
                                        'scaler': (9, )}
    assert sum(p.numel() for p in module.parameters()) == 54
    assert sum(p.numel() for p in KANConv2d(degree=2).parameters()) == 45
    assert torch.equal(module.scaler, torch.ones(9))
    with torch.no_grad():
        module.scaler.copy_(torch.arange(1.0, 10.0))
    x = torch.randn(2, 3, 7, 6)
    effective_poly_weight = module.poly_weight * torch.arange(1.0, 10.0)[:, None]
    expected = kan_conv2d(x, module.base_weight, effective_poly_weight, stride=2)
    torch.testing.assert_close(module(x), expected)
    state = KANConv2d(degree=3).state_dict()
    KANConv2d(degree=3).load_state_dict(state, strict=True)


@pytest.mark.parametrize('kwargs, shapes', [
    (dict(basis='legendre', degree=2), {'base_weight': (9, ), 'poly_weight': (9, 3),
                                        'scaler': (9, )}),
    (dict(basis='rbf'), {'base_weight': (9, ), 'base_bias': (1, ), 'poly_weight': (9, 3)}),
    (dict(basis='rbf', num_bumps=2, use_linear=False), {'poly_weight': (9, 2)}),
    (dict(basis='rbf_paper'), {'base_weight': (9, ), 'poly_weight': (9, 3), 'scaler': (9, ),
                               'base_bias': (1, )}),
    (dict(basis='b_spline'), {'base_weight': (9, ), 'poly_weight': (9, 6), 'scaler': (9, )}),
    (dict(basis='b_spline', degree=2, grid_size=2), {'base_weight': (9, ), 'poly_weight': (9, 4),
                                                     'scaler': (9, )}),
    (dict(normalization='arctan', use_scaler=False), {'base_weight': (9, ), 'poly_weight': (9, 4),
                                                      'arctan_scale': ()}),
], ids=['legendre', 'rbf', 'rbf-no-linear', 'rbf_paper', 'b_spline', 'b_spline-2-2', 'arctan'])
def test_module_parameters_per_family(kwargs, shapes, cpu_kernel):
    module = KANConv2d(**kwargs)
    assert parameter_shapes(module) == shapes
    x = torch.randn(2, 3, 5, 4)
    out = module(x)
    assert out.shape == (2, 3, 5, 4)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_module_computes_the_authors_layer(cpu_kernel):
    """Each switch reaches the op: the module equals the authors' layer on its effective
    weights (no base term without use_linear, SiLU without skip_activation, the rbf bias)."""
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    cases = [
        (dict(basis='jacobi', jacobi_alpha=1.0, jacobi_beta=0.0, normalization='arctan',
              skip_activation=False), dict(basis='jacobi', jacobi_alpha=1.0, jacobi_beta=0.0,
                                           normalization='arctan', base_activation='silu')),
        (dict(basis='b_spline', degree=2, grid_size=4, grid_range=(-2, 2), use_linear=False),
         dict(basis='b_spline', spline_order=2, grid_range=(-2.0, 2.0))),
        (dict(basis='rbf', num_bumps=4, grid_range=(-1.5, 1.0)),
         dict(basis='rbf', grid_range=(-1.5, 1.0))),
    ]
    for module_kwargs, op_kwargs in cases:
        module = KANConv2d(stride=2, **module_kwargs).double()
        poly_weight = module.poly_weight * (1 if module.scaler is None else module.scaler[:, None])
        base_weight = (torch.zeros(9, dtype=torch.float64)
                       if module.base_weight is None else module.base_weight)
        expected = authors_kan_conv2d(x, base_weight, poly_weight, stride=2,
                                      norm_scale=module.arctan_scale, **op_kwargs)
        if module.base_bias is not None:
            expected = expected + module.base_bias
        torch.testing.assert_close(module(x), expected)


def test_module_init_statistics():
    """The authors' inits, pooled over many layers."""
    torch.manual_seed(0)
    layers = [KANConv2d(degree=3) for _ in range(400)]
    base = torch.cat([layer.base_weight.detach() for layer in layers])
    poly = torch.cat([layer.poly_weight.detach().flatten() for layer in layers])
    assert abs(base.std().item() - math.sqrt(2 / 9)) < 0.02
    assert abs(poly.std().item() - 1 / 6) < 0.01
    assert abs(base.mean().item()) < 0.02 and abs(poly.mean().item()) < 0.01
    # FastKAN: truncated N(0, 1) on [-2, 2] (std 0.880), nn.Linear(9, 1)'s U(-1/3, 1/3).
    rbf = [KANConv2d(basis='rbf') for _ in range(400)]
    poly = torch.cat([layer.poly_weight.detach().flatten() for layer in rbf])
    assert poly.abs().max() <= 2 and abs(poly.std().item() - 0.880) < 0.02
    for name in ('base_weight', 'base_bias'):
        values = torch.cat([getattr(layer, name).detach() for layer in rbf])
        assert values.abs().max() <= 1 / 3 and abs(values.std().item() - 1 / 3 / 3**0.5) < 0.02
    # efficient-KAN: base and scaler U(-1/3, 1/3); splines fitted to noise of +-0.1 / 2 / G.
    splines = [KANConv2d(basis='b_spline', grid_size=5, degree=3) for _ in range(100)]
    for name in ('base_weight', 'scaler'):
        values = torch.cat([getattr(layer, name).detach() for layer in splines])
        assert values.abs().max() <= 1 / 3 and abs(values.std().item() - 1 / 3 / 3**0.5) < 0.02
    # The spline of each tap passes through noise in [-0.01, 0.01] at the 6 grid points.
    design = b_spline_basis(torch.linspace(-1, 1, 6), 5, 3)
    curves = torch.stack([design @ layer.poly_weight.detach().t() for layer in splines])
    assert curves.abs().max() <= 0.1 / 2 / 5 + 1e-6 and curves.std() > 0.1 / 5 / 4


def test_rbf_paper_is_mmrkans_earlier_rbf(cpu_kernel):
    """Same parameters as before (its checkpoints load), Chebyshev-style init, bias 0."""
    module = KANConv2d(basis='rbf_paper', stride=1)
    assert torch.equal(module.scaler, torch.ones(9)) and module.base_bias.item() == 0
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
        module = task_registry(scope).build(dict(type='KANConv2d', degree=2, stride=2,
                                                 basis='legendre'))
        assert isinstance(module, KANConv2d) and module.poly_weight.shape == (9, 3)


@pytest.mark.parametrize('kwargs, match', [
    (dict(basis='fourier'), r"basis='fourier' is not supported; allowed: \('chebyshev', "
     r"'legendre', 'jacobi', 'hermite', 'rbf', 'rbf_paper', 'b_spline'\)"),
    (dict(stride=3), 'stride=3 is not supported; allowed: 1, 2'),
    (dict(degree=-1), r"degree=-1 is not supported for basis='chebyshev'; allowed: an int >= 0"),
    (dict(basis='b_spline', degree=6), r'degree=6 .* allowed: an int from 1 to 5'),
    (dict(basis='rbf', num_bumps=1), 'num_bumps=1 must be an int >= 2'),
    (dict(normalization='l2'), r"normalization='l2' is not supported; allowed: \('none', "
     r"'tanh', 'arctan', 'min-max', 'standardization'\)"),
    (dict(grid_size=4), r"grid_size=4 is only used by basis 'b_spline', got basis='chebyshev'"),
    (dict(basis='rbf', scale_noise=0.2), r"scale_noise=0.2 is only used by basis 'b_spline'"),
    (dict(jacobi_alpha=1.0), r"jacobi_alpha=1.0 is only used by basis 'jacobi', got "
     r"basis='chebyshev'"),
    (dict(basis='jacobi', jacobi_beta=-1), r'jacobi_beta=-1 must be a finite number > -1'),
    (dict(basis='b_spline', grid_range=(1, -1)), r'grid_range=\(1, -1\) must be two finite'),
    (dict(basis='b_spline', grid_size=0), 'grid_size=0 must be an int >= 1'),
    (dict(use_linear='yes'), "use_linear='yes' must be True or False"),
])
def test_module_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KANConv2d(**kwargs)


def test_clear_errors():
    x, base_weight, poly_weight = random_inputs((1, 2, 5, 5), dtype=torch.float32)
    with pytest.raises(ValueError, match='stride=3 is not supported; allowed: 1, 2'):
        kan_conv2d(x, base_weight, poly_weight, stride=3)
    with pytest.raises(ValueError, match=r"basis='spline' is not supported; allowed: "
                       r"\('chebyshev', 'rbf', 'legendre', 'jacobi', 'hermite', 'b_spline'\)"):
        kan_conv2d(x, base_weight, poly_weight, basis='spline')
    with pytest.raises(ValueError, match=r"base_activation='gelu' is not supported; allowed: "
                       r"\('identity', 'silu'\)"):
        kan_conv2d(x, base_weight, poly_weight, base_activation='gelu')
    with pytest.raises(ValueError, match=r"norm_scale \(one value\) is the scale of "
                       r"normalization='arctan' and only of it; got normalization='arctan', "
                       'norm_scale=None'):
        kan_conv2d(x, base_weight, poly_weight, normalization='arctan')
    with pytest.raises(ValueError, match=r"got normalization='tanh', norm_scale=\(1,\)"):
        kan_conv2d(x, base_weight, poly_weight, norm_scale=torch.ones(1))
    with pytest.raises(ValueError, match=r'spline_order=7 is not supported; allowed: an int '
                       'from 1 to 5'):
        kan_conv2d(x, base_weight, poly_weight, basis='b_spline', spline_order=7)
    with pytest.raises(ValueError, match=r'K >= 5 for basis=.b_spline., got \(9, 4\)'):
        kan_conv2d(x, base_weight, poly_weight, basis='b_spline', spline_order=4)
    with pytest.raises(ValueError, match=r"spline_order=2 is only used by basis 'b_spline'"):
        kan_conv2d(x, base_weight, poly_weight, basis='rbf', spline_order=2)
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
    weights = (torch.zeros(9), torch.zeros(9, 4), torch.zeros(1))
    op = torch.ops.mmrkan.kan_conv2d_forward
    with pytest.raises(RuntimeError, match='stride=3 is not supported; allowed: 1, 2'):
        op(x, *weights, 3, 0, 1, 0, [])
    with pytest.raises(RuntimeError, match=r'with H, W >= 1, got \[1, 2, 5, 0\]'):
        op(torch.zeros(1, 2, 5, 0), *weights, 2, 0, 1, 0, [])
    with pytest.raises(RuntimeError, match='basis=6 is not supported'):
        op(x, *weights, 1, 6, 1, 0, [])
    with pytest.raises(RuntimeError, match='normalization=5 is not supported'):
        op(x, *weights, 1, 0, 5, 0, [])
    with pytest.raises(RuntimeError, match='base_activation=2 is not supported'):
        op(x, *weights, 1, 0, 1, 2, [])
    with pytest.raises(RuntimeError, match='takes no basis_params'):
        op(x, *weights, 1, 0, 1, 0, [1.0])
    with pytest.raises(RuntimeError, match=r'jacobi basis takes basis_params \[alpha, beta\]'):
        op(x, *weights, 1, 3, 1, 0, [-1.0, 0.5])
    with pytest.raises(RuntimeError, match='spline_order=2.5 is not supported'):
        op(x, *weights, 1, 5, 0, 0, [-1.0, 1.0, 2.5])
    with pytest.raises(RuntimeError, match=r'needs K = grid_size \+ spline_order >= 5'):
        op(x, *weights, 1, 5, 0, 0, [-1.0, 1.0, 4.0])
    with pytest.raises(RuntimeError, match=r'norm_scale must have shape \(1,\)'):
        op(x, torch.zeros(9), torch.zeros(9, 4), torch.zeros(2), 1, 0, 2, 0, [])
    with pytest.raises(RuntimeError, match='poly_weight must be Double for x of dtype Double'):
        op(x.double(), torch.zeros(9).double(), torch.zeros(9, 4), torch.zeros(1).double(), 1, 0,
           1, 0, [])
    with pytest.raises(RuntimeError, match="grad_out must have the output's shape"):
        torch.ops.mmrkan.kan_conv2d_backward(torch.zeros(1, 2, 5, 5), x, *weights, 2, 0, 1, 0, [])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


# Families on the CUDA kernels (the emulated tests cover every option; these, the real GPU).
CUDA_FAMILIES = [('chebyshev', 4, {}), ('rbf', 3, {}), ('legendre', 4, {}),
                 ('jacobi', 5, dict(jacobi_alpha=1.5, jacobi_beta=-0.3)), ('hermite', 4, {}),
                 ('b_spline', 6, dict(base_activation='silu'))]


@cuda
@pytest.mark.parametrize('dtype, tolerance', [(torch.float32, 1e-5), (torch.float16, 1e-2),
                                              (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('basis, num_functions, extra', CUDA_FAMILIES,
                         ids=[family[0] for family in CUDA_FAMILIES])
def test_cuda_matches_reference(dtype, tolerance, stride, basis, num_functions, extra,
                                assert_grads_close, cuda_kernel):
    x, base_weight, poly_weight = random_inputs((3, 5, 15, 13), num_functions,
                                                dtype=torch.float32)
    inputs = [x.detach().to('cuda', dtype).requires_grad_(),
              base_weight.detach().cuda().requires_grad_(),
              poly_weight.detach().cuda().requires_grad_()]
    kwargs = dict(stride=stride, basis=basis, **extra)
    out = kan_conv2d(*inputs, **kwargs)
    assert out.dtype == dtype
    expected = kan_conv2d_reference(*inputs, **kwargs)
    torch.testing.assert_close(out, expected, atol=tolerance, rtol=tolerance)
    grad_out = torch.randn_like(out)
    assert_grads_close(grads(kan_conv2d, inputs, grad_out, **kwargs),
                       grads(kan_conv2d_reference, inputs, grad_out, **kwargs),
                       GRAD_NAMES, atol=10 * tolerance, rtol=10 * tolerance)


@cuda
@pytest.mark.parametrize('normalization', ['arctan', 'min-max', 'standardization'])
def test_cuda_window_normalizations_match_reference(normalization, assert_grads_close,
                                                    cuda_kernel):
    inputs = [t.detach().cuda().requires_grad_() for t in random_inputs(
        (3, 5, 15, 13), 4, normalization=normalization, dtype=torch.float32)]
    kwargs = dict(basis='legendre', normalization=normalization, base_activation='silu')
    out = call(kan_conv2d, inputs, **kwargs)
    torch.testing.assert_close(out, call(kan_conv2d_reference, inputs, **kwargs), atol=1e-5,
                               rtol=1e-5)
    grad_out = torch.randn_like(out)
    assert_grads_close(grads(kan_conv2d, inputs, grad_out, **kwargs),
                       grads(kan_conv2d_reference, inputs, grad_out, **kwargs),
                       GRAD_NAMES, atol=1e-4, rtol=1e-4)


@cuda
def test_cuda_unsupported_options_run_the_reference(cuda_kernel):
    """What the CUDA kernels do not run (K > 8) warns and runs the reference."""
    x, base_weight, poly_weight = (t.detach().cuda() for t in random_inputs(
        (1, 2, 6, 5), 9, dtype=torch.float32))
    with pytest.warns(UserWarning, match='do not support K=9 basis functions.* runs the slow '
                                         'PyTorch'):
        out = kan_conv2d(x, base_weight, poly_weight)
    torch.testing.assert_close(out, kan_conv2d_reference(x, base_weight, poly_weight))


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


# ------------------------------------------------------------------------------ ONNX export
class _Families(torch.nn.Module):
    """Every family and normalisation in one model, for the export test."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList([
            KANConv2d(basis='rbf', num_bumps=3),
            KANConv2d(basis='b_spline', degree=2, grid_size=3, skip_activation=False),
            KANConv2d(basis='legendre', normalization='min-max', stride=2),
            KANConv2d(basis='jacobi', normalization='standardization'),
            KANConv2d(basis='hermite', degree=2, normalization='arctan'),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.tanh(conv(x))  # keeps the values in the bases' ranges
        return x


def test_every_family_exports_to_standard_onnx(tmp_path, cpu_kernel):
    """ONNX export runs the references (standard operators); onnxruntime then reproduces the
    kernels' outputs. The TorchScript-based exporter only: the dynamo one takes ~20 s more (it
    exports this model as well; tests/test_tools/test_pytorch2onnx.py runs both exporters)."""
    onnx = pytest.importorskip('onnx')
    onnxruntime = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = _Families().eval()
    x = torch.randn(2, 3, 9, 7)
    with torch.no_grad():
        expected = model(x)
    path = str(tmp_path / 'families.onnx')
    # torch < 2.5 has only the TorchScript-based exporter and no `dynamo` argument.
    exporter = ({'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters
                else {})
    torch.onnx.export(model, (x, ), path, input_names=['x'], **exporter)
    graph = onnx.load(path)
    assert {node.domain for node in graph.graph.node} <= {'', 'ai.onnx'}
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got, = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
