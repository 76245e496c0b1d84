"""When the KAN ops leave their compiled kernels for the PyTorch references: ONNX export.

ONNX has no ``mmrkan::*`` operators, so while a model is exported to ONNX the ops run their
references (:mod:`mmrkan.ops.reference`), which are made of standard operators that both
exporters translate: elementwise arithmetic, ``Pad`` and ``Conv`` (the group-rational activation
and the KAN convolution with per-value normalisations), strided ``Slice``, ``Concat``,
``ArgMin``/``ArgMax``, ``GatherElements``, ``Atan`` and ``Einsum`` (the KAN convolution with
per-window normalisations), comparisons and casts (the B-spline basis).
"""
import torch


def is_exporting() -> bool:
    """Whether an ONNX export is tracing the model.

    ``torch.onnx.is_in_onnx_export()`` covers both exporters of torch 2.14: the TorchScript-based
    one (``torch.onnx.export(..., dynamo=False)``) and the ``torch.export``-based one
    (``dynamo=True``), which sets the flag around its ``torch.export`` tracing as well. A plain
    ``torch.export`` or ``torch.compile`` keeps the compiled ops: they have fake kernels and
    export as custom operators.
    """
    return torch.onnx.is_in_onnx_export()
