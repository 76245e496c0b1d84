"""Loading of the compiled ops and the fallback to the references."""
import importlib.util
import sys
import warnings

import pytest
import torch

import mmrkan
from mmrkan.ops import group_rational, kan_conv2d, library


def test_missing_extension_warns_once_at_import_and_disables_the_kernels(monkeypatch):
    monkeypatch.delattr(mmrkan, '_ext')
    monkeypatch.setitem(sys.modules, 'mmrkan._ext', None)  # the import now fails
    spec = importlib.util.spec_from_file_location('library_without_ext', library.__file__)
    module = importlib.util.module_from_spec(spec)
    with pytest.warns(UserWarning, match='mmrkan._ext could not be imported .* falls back to the '
                      'slow PyTorch references'):
        spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert not module.has_kernel(torch.device('cpu'))


def test_device_without_kernels_falls_back_to_the_reference_with_one_warning(monkeypatch):
    monkeypatch.setattr(library, '_warned_devices', set())
    x = torch.empty(2, 3, 5, 8, device='meta')
    numerator, denominator = torch.empty(1, 6, device='meta'), torch.empty(4, 4, device='meta')
    with pytest.warns(UserWarning, match='no meta kernels; mmrkan.ops falls back'):
        out = group_rational(x, numerator, denominator)
    assert out.shape == x.shape and out.device.type == 'meta'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = kan_conv2d(x, torch.empty(9, device='meta'), torch.empty(9, 4, device='meta'),
                         stride=2)
    assert out.shape == (2, 3, 3, 4)


def _op_inputs(case: str):
    """(op, float64 inputs of ``torch.ops.mmrkan.<op>_forward``) for gradcheck; the tensors
    require grad."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    if case == 'group_rational':
        return case, (randn(2, 3, 8), randn(1, 6), randn(2, 4))
    if case == 'kan_conv2d':  # stride 2, chebyshev, arctan (its scale gets a gradient), silu
        return case, (randn(2, 3, 5, 4), randn(9), randn(9, 4), randn(1), 2, 0, 2, 1, [])
    # stride 1, b_spline of order 2 on 2 intervals of [-2, 2], min-max, identity
    return 'kan_conv2d', (randn(2, 3, 5, 4), randn(9), randn(9, 4), randn(1), 1, 5, 3, 0,
                          [-2.0, 2.0, 2.0])


CASES = ['group_rational', 'kan_conv2d', 'kan_conv2d-b_spline']


@pytest.mark.parametrize('case', CASES)
def test_ops_are_differentiable_through_torch_ops(case, cpu_kernel):
    """On every torch: torch.library autograd (>= 2.4) or the autograd.Function kernel (< 2.4)."""
    op, inputs = _op_inputs(case)
    forward = getattr(torch.ops.mmrkan, f'{op}_forward')
    assert forward(*inputs).grad_fn is not None
    assert torch.autograd.gradcheck(forward, inputs)


@pytest.mark.parametrize('case', CASES)
def test_autograd_function_of_older_torch_gives_the_same_gradients(case, cpu_kernel):
    """The torch < 2.4 path, run on this torch too: same values and gradients as torch.ops."""
    op, inputs = _op_inputs(case)
    setup_context, backward = library._OP_AUTOGRAD[op][2:]
    through_function = library._autograd_function(op, setup_context, backward)
    tensors = [value for value in inputs if isinstance(value, torch.Tensor)]
    out = through_function(*inputs)
    expected = getattr(torch.ops.mmrkan, f'{op}_forward')(*inputs)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    grads = torch.autograd.grad(out.square().sum(), tensors)
    expected_grads = torch.autograd.grad(expected.square().sum(), tensors)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.autograd.gradcheck(through_function, inputs)
