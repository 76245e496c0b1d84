"""The compiled KAN ops: loading, fake (meta) kernels, autograd and shared input checks.

The schemas live in ``csrc/kan_ops.cpp`` (``torch.ops.mmrkan.*``); the device kernels in
``csrc/cpu`` and ``csrc/cuda``. ``torch.ops.mmrkan.*_forward`` are differentiable on every
supported torch (2.1 to 2.15):

- torch >= 2.4: autograd and fake kernels through ``torch.library.register_autograd`` /
  ``register_fake``, which lets ``torch.compile(fullgraph=True)`` trace models using the ops
  (``SUPPORTS_COMPILE``);
- torch < 2.4: a ``torch.autograd.Function`` over the same forward and backward ops, registered
  as the ops' Autograd kernel (fake kernels through ``torch.library.impl_abstract`` on 2.2 and
  2.3; none on 2.1). ``torch.compile`` of the ops is not supported there.

Autocast: the ops have no autocast kernel, so they keep the storage dtype of ``x`` (fp16/bf16
inputs stay fp16/bf16 in memory) and always compute in fp32 (fp64 for fp64 inputs); the
coefficients are handed to the kernels in that compute dtype.
"""
import warnings
from typing import Callable, Tuple

import torch

try:
    from mmrkan import _ext
except ImportError as error:  # the extension was not built: use the references
    _ext = None
    warnings.warn(
        f'mmrkan._ext could not be imported ({error}); mmrkan.ops falls back to the slow '
        'PyTorch references. Build the extension with `python setup.py build_ext --inplace` '
        'or `pip install -e .`.')

# torch.library.register_autograd and register_fake came with torch 2.4.
SUPPORTS_COMPILE = hasattr(torch.library, 'register_autograd')

# Computed once: a pybind call inside a traced function would break the torch.compile graph.
_DEVICES_WITH_KERNELS = (() if _ext is None else ('cpu', 'cuda') if _ext.with_cuda() else ('cpu',))
_warned_devices = set()


def _is_compiling() -> bool:
    if hasattr(torch.compiler, 'is_compiling'):  # torch >= 2.3
        return torch.compiler.is_compiling()
    return torch._dynamo.is_compiling()


def has_kernel(device: torch.device) -> bool:
    """Whether the compiled extension has kernels for ``device``; warns once per device if not."""
    if device.type in _DEVICES_WITH_KERNELS:
        return True
    if _ext is not None and device.type not in _warned_devices and not _is_compiling():
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


def _group_rational_forward_fake(x, numerator, denominator):
    return torch.empty_like(x)


def _group_rational_backward_fake(grad_out, x, numerator, denominator):
    return torch.empty_like(x), torch.empty_like(numerator), torch.empty_like(denominator)


def _group_rational_setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _group_rational_backward(ctx, grad_out: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    x, numerator, denominator = ctx.saved_tensors
    return torch.ops.mmrkan.group_rational_backward(grad_out.contiguous(), x, numerator,
                                                    denominator)


def _kan_conv2d_forward_fake(x, base_weight, poly_weight, norm_scale, stride, basis,
                             normalization, base_activation, basis_params):
    n, c, h, w = x.shape
    return x.new_empty((n, c, (h - 1) // stride + 1, (w - 1) // stride + 1))


def _kan_conv2d_backward_fake(grad_out, x, base_weight, poly_weight, norm_scale, stride, basis,
                              normalization, base_activation, basis_params):
    return (torch.empty_like(x), torch.empty_like(base_weight), torch.empty_like(poly_weight),
            torch.empty_like(norm_scale))


def _kan_conv2d_setup_context(ctx, inputs, output) -> None:
    x, base_weight, poly_weight, norm_scale, *ctx.arguments = inputs
    ctx.save_for_backward(x, base_weight, poly_weight, norm_scale)


def _kan_conv2d_backward(ctx, grad_out: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    grads = torch.ops.mmrkan.kan_conv2d_backward(grad_out.contiguous(), *ctx.saved_tensors,
                                                 *ctx.arguments)
    return (*grads, None, None, None, None, None)


# op name -> (fake forward, fake backward, setup_context, backward)
_OP_AUTOGRAD = {
    'group_rational': (_group_rational_forward_fake, _group_rational_backward_fake,
                       _group_rational_setup_context, _group_rational_backward),
    'kan_conv2d': (_kan_conv2d_forward_fake, _kan_conv2d_backward_fake, _kan_conv2d_setup_context,
                   _kan_conv2d_backward),
}


def _register_with_torch_library() -> None:
    """torch >= 2.4: fake kernels and autograd through torch.library (traceable by compile)."""
    for op, (forward_fake, backward_fake, setup_context, backward) in _OP_AUTOGRAD.items():
        torch.library.register_fake(f'mmrkan::{op}_forward', forward_fake)
        torch.library.register_fake(f'mmrkan::{op}_backward', backward_fake)
        torch.library.register_autograd(f'mmrkan::{op}_forward', backward,
                                        setup_context=setup_context)


def _autograd_function(op: str, setup_context: Callable, backward: Callable) -> Callable:
    """A ``torch.autograd.Function`` running the forward op below the Autograd dispatch key."""
    forward_op = getattr(torch.ops.mmrkan, f'{op}_forward')

    def forward(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return forward_op(*args)

    function = type(f'{op}_function', (torch.autograd.Function, ), {
        'forward': staticmethod(forward),
        'setup_context': staticmethod(setup_context),
        'backward': staticmethod(backward),
    })
    return function.apply


def _register_with_autograd_functions() -> None:
    """torch < 2.4: the ops' Autograd kernels are ``torch.autograd.Function``s over the same ops."""
    impl_abstract = getattr(torch.library, 'impl_abstract', None)  # torch 2.2 and 2.3
    for op, (forward_fake, backward_fake, setup_context, backward) in _OP_AUTOGRAD.items():
        if impl_abstract is not None:
            impl_abstract(f'mmrkan::{op}_forward', forward_fake, lib=_OLD_TORCH_LIBRARY)
            impl_abstract(f'mmrkan::{op}_backward', backward_fake, lib=_OLD_TORCH_LIBRARY)
        _OLD_TORCH_LIBRARY.impl(f'{op}_forward', _autograd_function(op, setup_context, backward),
                                'Autograd')


if _ext is not None:
    if SUPPORTS_COMPILE:
        _register_with_torch_library()
    else:
        # Kept alive for the whole process: the registrations last as long as this object.
        _OLD_TORCH_LIBRARY = torch.library.Library('mmrkan', 'IMPL')
        _register_with_autograd_functions()
