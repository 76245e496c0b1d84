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
