"""A stand-in for mmcv's compiled ``mmcv._ext``, used only by ``tools/gpu_check.sh``.

The GPU check machine has no time to compile mmcv's ops (and compiling their CUDA kernels would
take far longer than the check itself). Mask R-CNN training needs only two of them, NMS and
RoIAlign (average pooling), and torchvision, present there, has CUDA and CPU kernels of both with
the same definitions (both come from Detectron). ``gpu_check`` installs mmcv 2.1.0 without ops and
copies this file in as ``mmcv/_ext.py``; every other mmcv op raises a clear error when called.
``tests/test_tools/test_gpu_check.py`` compares these functions with mmcv's compiled CPU ops.
"""
from typing import Any, Callable

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.*)
from torchvision.ops import nms as torchvision_nms

PROVIDED_OPS = ('nms', 'roi_align_forward', 'roi_align_backward', 'get_compiler_version',
                'get_compiling_cuda_version')
_AVERAGE_POOLING = 1  # mmcv's pool_mode code for 'avg' (0 is 'max')


def nms(bboxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        offset: int) -> torch.Tensor:
    """mmcv's ``nms``: indices of the kept boxes, by decreasing score."""
    if offset not in (0, 1):
        raise ValueError(f'nms: offset={offset} is not supported; allowed: 0, 1')
    if offset:  # mmcv's legacy "+1" box sizes are torchvision's sizes of boxes one pixel larger
        bboxes = torch.cat([bboxes[:, :2], bboxes[:, 2:] + offset], dim=1)
    return torchvision_nms(bboxes, scores, float(iou_threshold))


def _check_pool_mode(pool_mode: int) -> None:
    if pool_mode != _AVERAGE_POOLING:
        raise NotImplementedError(
            f'roi_align: pool_mode={pool_mode} (max pooling) is not provided by the torchvision '
            "stand-in of mmcv._ext; only pool_mode='avg' is")


def roi_align_forward(input: torch.Tensor, rois: torch.Tensor, output: torch.Tensor,
                      argmax_y: torch.Tensor, argmax_x: torch.Tensor, aligned_height: int,
                      aligned_width: int, spatial_scale: float, sampling_ratio: int,
                      pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_forward``: fills ``output`` in place (argmax_* are unused for 'avg')."""
    _check_pool_mode(pool_mode)
    pooled = torch.ops.torchvision.roi_align(input, rois.to(input.dtype), float(spatial_scale),
                                             int(aligned_height), int(aligned_width),
                                             int(sampling_ratio), bool(aligned))
    output.copy_(pooled)


def roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor, argmax_y: torch.Tensor,
                       argmax_x: torch.Tensor, grad_input: torch.Tensor, aligned_height: int,
                       aligned_width: int, spatial_scale: float, sampling_ratio: int,
                       pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_backward``: fills ``grad_input`` in place."""
    _check_pool_mode(pool_mode)
    batch, channels, height, width = grad_input.shape
    grad = torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), float(spatial_scale), int(aligned_height),
        int(aligned_width), batch, channels, height, width, int(sampling_ratio), bool(aligned))
    grad_input.copy_(grad)


def get_compiler_version() -> str:
    return f'none: torchvision {torchvision.__version__} stand-in (tools/gpu_check/mmcv_ext.py)'


def get_compiling_cuda_version() -> str:
    return get_compiler_version()


def __getattr__(name: str) -> Callable[..., Any]:
    """Every other op of mmcv: present (mmcv.ops checks names at import), failing when called."""
    if name.startswith('__'):
        raise AttributeError(name)

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f'mmcv op {name!r} is not compiled on the GPU check machine: tools/gpu_check '
            f'provides only {", ".join(PROVIDED_OPS)} (through torchvision)')

    return unavailable
