"""Shared logic of the analysis tools (tools/analysis_tools): FLOP counting with the KAN ops,
synthetic task batches, KAN-free baselines, throughput timing, plots of learned KAN layers."""
from .baseline import build_baseline
from .complexity import (RATIONAL_FLOPS_PER_ELEMENT, Complexity, kan_conv2d_flops_per_output,
                         model_complexity, rational_flops_per_element)
from .kan_plots import KANLayers, find_kan_layers, plot_kan_layers
from .task_inputs import DEFAULT_SHAPES, build_task_model, synthetic_batch
from .throughput import images_per_second

__all__ = [
    'build_baseline', 'RATIONAL_FLOPS_PER_ELEMENT', 'Complexity', 'kan_conv2d_flops_per_output',
    'model_complexity', 'rational_flops_per_element', 'KANLayers', 'find_kan_layers',
    'plot_kan_layers', 'DEFAULT_SHAPES',
    'build_task_model', 'synthetic_batch', 'images_per_second'
]
