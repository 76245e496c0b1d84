"""The model of a task config and synthetic batches for it, shared by the analysis tools."""
import copy
from typing import Dict, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.model import BaseModel, revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData
from mmpretrain.structures import DataSample
from mmseg.structures import SegDataSample

from mmrkan.registry import task_registry

# Input (height, width) when the user gives none: the ImageNet crop, the ADE20K crop, and the
# COCO 1333x800 scale.
DEFAULT_SHAPES: Dict[str, Tuple[int, int]] = {
    'mmpretrain': (224, 224),
    'mmseg': (512, 512),
    'mmdet': (800, 1333),
}


def build_task_model(cfg: Config) -> BaseModel:
    """The config's model, in its task's registry, with SyncBN reverted to BN (one process).

    A top-level ``data_preprocessor`` is the model's default one, as the Runner does it. Weights
    keep their default initialisation: ``init_cfg`` may name pretrained checkpoints, which cost
    and throughput do not depend on.
    """
    init_default_scope(cfg.default_scope)
    # Copies: building mutates its config (mmpretrain's batch augments append to their probs).
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    model = task_registry(cfg.default_scope).build(model_cfg)
    return revert_sync_batchnorm(model)


def synthetic_batch(scope: str, batch_size: int, shape: Tuple[int, int]) -> dict:
    """A batch as the task's dataloader yields it (uint8 images, annotated data samples).

    Every image carries one annotation of class 0: a centred box and mask (mmdet), a label
    (mmpretrain), a label map with a centred square of class 1 (mmseg). The model's
    ``data_preprocessor`` turns it into model inputs.
    """
    height, width = shape
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))
    samples = []
    for _ in range(batch_size):
        if scope == 'mmpretrain':
            sample = DataSample(metainfo=meta).set_gt_label(0)
        elif scope == 'mmdet':
            mask = np.zeros((1, height, width), dtype=np.uint8)
            mask[0, box[1]:box[3], box[0]:box[2]] = 1
            sample = DetDataSample(metainfo=dict(meta, scale_factor=(1.0, 1.0), flip=False))
            sample.gt_instances = InstanceData(
                bboxes=torch.tensor([box], dtype=torch.float32),
                labels=torch.zeros(1, dtype=torch.long),
                masks=BitmapMasks(mask, height, width))
        elif scope == 'mmseg':
            label_map = torch.zeros(1, height, width, dtype=torch.long)
            label_map[0, box[1]:box[3], box[0]:box[2]] = 1
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=label_map)
        else:
            raise ValueError(f'default_scope={scope!r} is not supported; allowed: '
                             f'{tuple(DEFAULT_SHAPES)}')
        samples.append(sample)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8) for _ in samples]
    return dict(inputs=images, data_samples=samples)
