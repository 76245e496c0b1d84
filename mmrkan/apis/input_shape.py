"""The input size a config's model works at: what its test pipeline makes of an image."""
from typing import Any, Optional, Tuple

from mmengine.config import Config

# (height, width) from a transform setting: mmcv/mmdet/mmseg sizes are (width, height).
_SIZE_SETTINGS = {'Resize': 'scale', 'ResizeEdge': 'scale', 'CenterCrop': 'crop_size'}


def _hw(value: Any) -> Optional[Tuple[int, int]]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[1]), int(value[0])
    return None


def _test_pipeline(cfg: Config) -> list:
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    dataset = loader.get('dataset') if isinstance(loader, dict) else None
    while isinstance(dataset, dict) and 'pipeline' not in dataset and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    pipeline = dataset.get('pipeline') if isinstance(dataset, dict) else None
    return list(pipeline or cfg.get('test_pipeline') or [])


def config_input_shape(cfg: Config) -> Optional[Tuple[Tuple[int, int], str]]:
    """``((height, width), why)``: the size the test pipeline's last resize or crop gives (a
    square image for a short-edge resize; the ``scale`` of a ratio-keeping resize, as the
    model-index entries state it), or None when the pipeline sets no size."""
    found = None
    for transform in _test_pipeline(cfg):
        if not isinstance(transform, dict):
            continue
        kind = str(transform.get('type', '')).rsplit('.', 1)[-1]
        setting = _SIZE_SETTINGS.get(kind)
        shape = _hw(transform.get(setting)) if setting else None
        if shape is not None:
            found = shape, f'the test pipeline\'s {kind} {setting}={transform[setting]}'
    return found
