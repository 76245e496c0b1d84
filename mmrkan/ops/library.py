"""The compiled KAN ops: loading, fake (meta) kernels, autograd and shared input checks.

The schemas live in ``csrc/kan_ops.cpp`` (``torch.ops.mmrkan.*``); the device kernels in
``csrc/cpu`` and ``csrc/cuda``. Registering fake kernels and autograd here through
``torch.library`` lets ``torch.compile(fullgraph=True)`` trace models that use the ops.

Autocast: the ops have no autocast kernel, so they keep the storage dtype of ``x`` (fp16/bf16
inputs stay fp16/bf16 in memory) and always compute in fp32 (fp64 for fp64 inputs); the
coefficients are handed to the kernels in that compute dtype.
"""
import warnings
from typing import Tuple

import torch

try:
    from mmrkan import _ext
except ImportError as error:  # the extension was not built: use the references
    _ext = None
    warnings.warn(
        f'mmrkan._ext could not be imported ({error}); mmrkan.ops falls back to the slow '
        'PyTorch references. Build the extension with `python setup.py build_ext --inplace` '
        'or `pip install -e .`.')

# Computed once: a pybind call inside a traced function would break the torch.compile graph.
_DEVICES_WITH_KERNELS = (() if _ext is None else ('cpu', 'cuda') if _ext.with_cuda() else ('cpu',))
_warned_devices = set()


def has_kernel(device: torch.device) -> bool:
    """Whether the compiled extension has kernels for ``device``; warns once per device if not."""
    if device.type in _DEVICES_WITH_KERNELS:
        return True
    if _ext is not None and device.type not in _warned_devices and \
            not torch.compiler.is_compiling():
        _warned_devices.add(device.type)
        warnings.warn(f'mmrkan._ext has no {device.type} kernels; mmrkan.ops falls back to the '
                      'slow PyTorch references on that device.')
    return False


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the kernels compute in and take their coefficients in."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_tensors(op: str, **tensors: torch.Tensor) -> None:
    """Clear errors for non-tensors, non-floating dtypes and tensors on different devices."""
    devices = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f'{op}: {name} must be a torch.Tensor, got {type(tensor).__name__}')
        if not tensor.is_floating_point():
            raise TypeError(f'{op}: {name} must be a floating-point tensor, got dtype '
                            f'{tensor.dtype}; allowed: float64, float32, float16, bfloat16')
        devices[name] = tensor.device
    if len(set(devices.values())) > 1:
        found = ', '.join(f'{name} on {device}' for name, device in devices.items())
        raise ValueError(f'{op}: all tensors must be on the same device, got {found}')


if _ext is not None:

    @torch.library.register_fake('mmrkan::group_rational_forward')
    def _group_rational_forward_fake(x, numerator, denominator):
        return torch.empty_like(x)

    @torch.library.register_fake('mmrkan::group_rational_backward')
    def _group_rational_backward_fake(grad_out, x, numerator, denominator):
        return torch.empty_like(x), torch.empty_like(numerator), torch.empty_like(denominator)

    def _group_rational_setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    def _group_rational_backward(ctx, grad_out: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, numerator, denominator = ctx.saved_tensors
        return torch.ops.mmrkan.group_rational_backward(grad_out.contiguous(), x, numerator,
                                                        denominator)

    torch.library.register_autograd(
        'mmrkan::group_rational_forward',
        _group_rational_backward,
        setup_context=_group_rational_setup_context)

    @torch.library.register_fake('mmrkan::kan_conv2d_forward')
    def _kan_conv2d_forward_fake(x, base_weight, poly_weight, stride, basis):
        n, c, h, w = x.shape
        return x.new_empty((n, c, (h - 1) // stride + 1, (w - 1) // stride + 1))

    @torch.library.register_fake('mmrkan::kan_conv2d_backward')
    def _kan_conv2d_backward_fake(grad_out, x, base_weight, poly_weight, stride, basis):
        return torch.empty_like(x), torch.empty_like(base_weight), torch.empty_like(poly_weight)

    def _kan_conv2d_setup_context(ctx, inputs, output) -> None:
        x, base_weight, poly_weight, ctx.stride, ctx.basis = inputs
        ctx.save_for_backward(x, base_weight, poly_weight)

    def _kan_conv2d_backward(ctx, grad_out: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, base_weight, poly_weight = ctx.saved_tensors
        grads = torch.ops.mmrkan.kan_conv2d_backward(grad_out.contiguous(), x, base_weight,
                                                     poly_weight, ctx.stride, ctx.basis)
        return (*grads, None, None)

    torch.library.register_autograd(
        'mmrkan::kan_conv2d_forward', _kan_conv2d_backward, setup_context=_kan_conv2d_setup_context)
