"""Shared fixtures of the op tests."""
import pytest
import torch

from mmrkan.ops import library


@pytest.fixture
def cpu_kernel() -> None:
    """Fails (rather than silently testing the reference fallback) when the kernels are missing."""
    if not library.has_kernel(torch.device('cpu')):
        pytest.fail('mmrkan._ext is not built: run `python setup.py build_ext --inplace`')


@pytest.fixture
def cuda_kernel() -> None:
    """CUDA tests must run the CUDA kernels, not the reference fallback."""
    if not library.has_kernel(torch.device('cuda')):
        pytest.fail('mmrkan._ext has no CUDA kernels: rebuild it on a machine with CUDA '
                    '(or FORCE_CUDA=1)')


def _assert_grads_close(actual, expected, names, **tolerances) -> None:
    for name, got, want in zip(names, actual, expected):
        torch.testing.assert_close(got, want, msg=lambda m, n=name: f'gradient of {n}: {m}',
                                   **tolerances)


@pytest.fixture
def assert_grads_close():
    """``assert_grads_close(actual, expected, names, **tolerances)``, naming the failing input."""
    return _assert_grads_close
