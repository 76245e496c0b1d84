"""ONNX export of mmrkan models and its check against PyTorch with onnxruntime.

What is exported, per task (one input: the normalised image ``(N, 3, H, W)`` the data
preprocessor makes; the preprocessing itself stays outside the graph, as in mmdeploy):

- classifier (mmpretrain ``ImageClassifier``): ``logits`` ``(N, num_classes)``, before softmax;
- segmentor (mmseg ``EncoderDecoder``, e.g. UperNet): ``seg_logits`` ``(N, classes, H, W)``,
  the decode head's logits resized to the input, as ``encode_decode`` gives them;
- detector (mmdet, e.g. Mask R-CNN): ``backbone`` + ``neck`` only, the feature maps
  ``feat0 .. featK`` the heads read. The whole detector (RPN, RoI heads, NMS) is mmdeploy's job.

The KAN ops export as standard ONNX operators: while exporting they run their PyTorch references
(:func:`mmrkan.ops.export.is_exporting`).
"""
import inspect
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.models.detectors import BaseDetector
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmpretrain.models import ImageClassifier
from mmseg.models import EncoderDecoder
from torch import nn

from mmrkan.analysis import DEFAULT_SHAPES, build_task_model
from mmrkan.apis import ToolError
from mmrkan.engine.checkpoint import CheckpointError

SUPPORTED_MODELS = ('ImageClassifier (mmpretrain), EncoderDecoder such as UperNet (mmseg), '
                    'detectors with backbone and neck such as Mask R-CNN (mmdet)')
# The opsets each exporter of torch 2.14 targets by default.
DEFAULT_OPSETS = {'torchscript': 17, 'dynamo': 18}
INPUT_NAME = 'input'


class ClassifierLogits(nn.Module):
    """An mmpretrain classifier's class logits (before softmax)."""

    def __init__(self, model: ImageClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs, mode='tensor')


class SegmentorLogits(nn.Module):
    """An mmseg segmentor's per-class logits at the input resolution (whole-image inference)."""

    def __init__(self, model: EncoderDecoder, shape: Tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.img_metas = [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.encode_decode(inputs, self.img_metas)


class DetectorFeatures(nn.Module):
    """An mmdet detector's backbone and neck: the multi-scale feature maps its heads read."""

    def __init__(self, model: BaseDetector) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.neck = model.neck

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.neck(self.backbone(inputs)))


def export_shape(cfg: Config, shape: Optional[Sequence[int]] = None) -> Tuple[int, int]:
    """``(H, W)`` of the exported input from ``--shape H [W]``, refused when the model's inputs
    could not have it. Default: the task's usual size (:data:`mmrkan.analysis.DEFAULT_SHAPES`),
    padded as a detector's data preprocessor pads it (800x1333 -> 800x1344)."""
    divisor = 1
    if cfg.default_scope == 'mmdet':
        divisor = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor', 1)
    if shape is None:
        return tuple(-(-side // divisor) * divisor for side in DEFAULT_SHAPES[cfg.default_scope])
    if len(shape) not in (1, 2) or any(side < 1 for side in shape):
        raise ToolError(f'--shape {" ".join(map(str, shape))}: give H W (or one side for a '
                        'square), positive integers')
    height, width = shape[0], shape[-1]
    if height % divisor or width % divisor:
        raise ToolError(f'--shape {height} {width}: the detector\'s data_preprocessor pads images '
                        f'to multiples of {divisor} (pad_size_divisor); give multiples of it')
    return height, width


def build_exportable_model(cfg: Config, shape: Tuple[int, int], checkpoint: Optional[str] = None,
                           device: str = 'cpu') -> nn.Module:
    """The part of the config's model that is exported, with ``checkpoint``'s weights, in eval
    mode. Without a checkpoint the weights keep their initialisation (to try the export)."""
    # init_weights is not called: a config's init_cfg may name pretrained files the checkpoint
    # replaces anyway.
    model = build_task_model(cfg)
    if checkpoint is not None:
        try:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        except CheckpointError:  # a RuntimeError already worded for the user
            raise
        except RuntimeError as error:  # the keys that do not fit
            raise ToolError(f'checkpoint {checkpoint!r} does not fit the model of the config: '
                            + '; '.join(str(error).strip().splitlines())) from None
    if isinstance(model, ImageClassifier):
        if not model.with_head:
            raise ToolError('the classifier has no head: nothing to export but features')
        exportable = ClassifierLogits(model)
    elif isinstance(model, EncoderDecoder):
        exportable = SegmentorLogits(model, shape)
    elif isinstance(model, BaseDetector) and getattr(model, 'with_neck', False):
        exportable = DetectorFeatures(model)
    else:
        raise ToolError(f'model type {type(model).__name__} is not supported; supported: '
                        f'{SUPPORTED_MODELS}')
    return exportable.to(device).eval()


def output_names(outputs: Sequence[torch.Tensor], module: nn.Module) -> List[str]:
    """The names of the exported graph's outputs."""
    if isinstance(module, ClassifierLogits):
        return ['logits']
    if isinstance(module, SegmentorLogits):
        return ['seg_logits']
    return [f'feat{index}' for index in range(len(outputs))]


def as_tensors(outputs) -> List[torch.Tensor]:
    """A module's output (one tensor or a tuple of them) as a list."""
    return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


def export_onnx(module: nn.Module, inputs: torch.Tensor, path: str, opset: int,
                dynamo: bool) -> List[str]:
    """Export ``module`` on ``inputs`` (static shape) to one self-contained ONNX file; returns the
    output names.

    ``dynamo=False`` is torch's TorchScript-based exporter, ``dynamo=True`` the
    ``torch.export``-based one (needs onnxscript).
    """
    # torch < 2.5 has no `dynamo` argument: only the TorchScript-based exporter.
    has_dynamo = 'dynamo' in inspect.signature(torch.onnx.export).parameters
    if dynamo and not has_dynamo:
        raise ToolError(f'dynamo=True needs the torch.export-based ONNX exporter, which torch '
                        f'{torch.__version__} lacks; use the TorchScript-based one (dynamo=False)')
    with torch.no_grad():
        names = output_names(as_tensors(module(inputs)), module)
    options = dict(external_data=False) if dynamo else {}
    if has_dynamo:
        options['dynamo'] = dynamo
    torch.onnx.export(module, (inputs, ), path, opset_version=opset, input_names=[INPUT_NAME],
                      output_names=names, **options)
    return names


def non_standard_ops(path: str) -> List[str]:
    """The operators of the ONNX file outside the standard ``ai.onnx`` domain (e.g. mmrkan's)."""
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model)
    return sorted({f'{node.domain}::{node.op_type}' for node in model.graph.node
                   if node.domain not in ('', 'ai.onnx')})


def onnxruntime_differences(path: str, module: nn.Module,
                            inputs: torch.Tensor) -> Dict[str, float]:
    """Max absolute difference between onnxruntime (CPU) and PyTorch, per output, on ``inputs``.

    PyTorch runs the model as users run it (the compiled KAN kernels where there are).
    """
    import onnxruntime
    with torch.no_grad():
        expected = as_tensors(module(inputs))
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    names = [output.name for output in session.get_outputs()]
    got = session.run(names, {INPUT_NAME: inputs.cpu().numpy()})
    if len(got) != len(expected):
        raise RuntimeError(f'{path} has {len(got)} outputs, the PyTorch module {len(expected)}')
    return {
        name: float(np.abs(onnx_out - torch_out.detach().cpu().numpy()).max())
        for name, onnx_out, torch_out in zip(names, got, expected)
    }
