"""Deployment of mmrkan models: ONNX export (``tools/deployment/pytorch2onnx.py``)."""
from .onnx_export import (DEFAULT_OPSETS, SUPPORTED_MODELS, build_exportable_model, export_onnx,
                          export_shape, non_standard_ops, onnxruntime_differences)

__all__ = ['DEFAULT_OPSETS', 'SUPPORTED_MODELS', 'build_exportable_model', 'export_onnx',
           'export_shape', 'non_standard_ops', 'onnxruntime_differences']
