"""Run any task config on the generated shapes data at tiny image sizes (for tests).

The config's own model, pipeline, optimizer, schedulers and hooks are kept; only the data roots,
the image sizes in the pipelines, the batch size and the length of training change.
"""
import copy
from typing import Any, Dict

from mmengine.config import Config, ConfigDict

from mmrkan.apis import without_amp
from .synthetic_data import SHAPE_CLASSES

# The generated dataset (key of ``roots``) that each classification dataset type reads.
_CLASSIFICATION_ROOTS = dict(ImageNet='imagenet', CIFAR100='cifar100', Food101='food101',
                             CustomDataset='tiny_imagenet')
# Keys of pipeline transforms that hold an image size (int or (w, h) / (h, w) pairs, or lists).
_SIZE_KEYS = ('scale', 'scales', 'img_scale', 'crop_size', 'size', 'scale_size')


def _shrink(value: Any, min_side: int) -> Any:
    """Scale an image-size setting so its shorter side is at most ``min_side``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return min(value, min_side)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, (int, float)) for v in value):
        if isinstance(value[0], float) and value[0] <= 1:  # a ratio range, not a size
            return value
        factor = min(1.0, min_side / min(value))
        return type(value)(max(1, int(round(v * factor))) for v in value)
    if isinstance(value, (tuple, list)):
        return type(value)(_shrink(v, min_side) for v in value)
    return value


def shrink_pipeline(pipeline: list, min_side: int = 64) -> list:
    """A copy of ``pipeline`` whose transforms produce images about ``min_side`` pixels high."""
    pipeline = copy.deepcopy(pipeline)
    for transform in pipeline:
        for key in _SIZE_KEYS:
            if key in transform:
                transform[key] = _shrink(transform[key], min_side)
        for key in ('transforms', 'transforms_list'):
            if key in transform and isinstance(transform[key], list):
                transform[key] = [shrink_pipeline(t, min_side) if isinstance(t, list)
                                  else shrink_pipeline([t], min_side)[0] for t in transform[key]]
    return pipeline


def _innermost(dataset: ConfigDict) -> ConfigDict:
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def _redirect_dataset(dataset: ConfigDict, scope: str, roots: Dict[str, str], split: str) -> None:
    if scope == 'mmdet':
        coco_split = 'train2017' if split == 'train' else 'val2017'
        dataset.update(data_root=roots['coco'], ann_file=f'annotations/instances_{coco_split}.json',
                       data_prefix=dict(img=f'{coco_split}/'), metainfo=dict(classes=SHAPE_CLASSES))
    elif scope == 'mmseg':
        ade_split = 'training' if split == 'train' else 'validation'
        dataset.update(data_root=roots['ade20k'],
                       data_prefix=dict(img_path=f'images/{ade_split}', seg_map_path=f'annotations/{ade_split}'))
    elif scope == 'mmpretrain':
        dataset_type = dataset.get('type')
        if dataset_type not in _CLASSIFICATION_ROOTS:
            raise ValueError(f'dataset type {dataset_type!r} has no generated data; supported: '
                             f'{sorted(_CLASSIFICATION_ROOTS)}')
        root_key = _CLASSIFICATION_ROOTS[dataset_type]
        dataset.update(data_root=roots[root_key])
        if dataset_type == 'ImageNet':
            dataset.update(split=split, data_prefix='', ann_file='')
        elif dataset_type == 'CIFAR100':
            dataset.update(split='train' if split == 'train' else 'test', download=False)
        elif dataset_type == 'Food101':
            dataset.update(split='train' if split == 'train' else 'test')
        else:  # Tiny ImageNet, after tools/dataset_converters/tiny_imagenet.py
            dataset.update(ann_file=f'meta/{split}.txt', data_prefix='')
    else:
        raise ValueError(f'default_scope={scope!r} is not supported')


def _drop_pretrained(node: Any) -> None:
    """Remove ``init_cfg`` entries that load pretrained checkpoints (absent in tests)."""
    if isinstance(node, dict):
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def tiny_training_config(cfg: Config, roots: Dict[str, str], work_dir: str, batch_size: int = 2,
                         min_side: int = 64) -> Config:
    """A copy of ``cfg`` that trains exactly one iteration on the generated data, with no validation,
    no checkpoint and no pretrained weights, on the CPU (so AMP becomes fp32: mmengine's AMP wrapper
    needs a GPU). ``roots`` maps 'coco'/'ade20k'/'imagenet'/'cifar100'/'food101'/'tiny_imagenet' to
    generated roots (the last one converted by tools/dataset_converters/tiny_imagenet.py); CIFAR-100
    data is read only inside :func:`~mmrkan.testing.accept_generated_cifar100`."""
    cfg = copy.deepcopy(cfg)
    _drop_pretrained(cfg.model)
    cfg.optim_wrapper = without_amp(cfg.optim_wrapper)
    scope = cfg.default_scope
    loader = cfg.train_dataloader
    loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    loader.pop('batch_sampler', None)  # mmdet's aspect-ratio grouping would wait for more images
    dataset = _innermost(loader.dataset)
    _redirect_dataset(dataset, scope, roots, 'train')
    dataset.pipeline = shrink_pipeline(dataset.pipeline, min_side)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if preprocessor.get('size'):  # mmseg pads every batch to the crop size
        preprocessor['size'] = _shrink(preprocessor['size'], min_side)
    dataset.indices = batch_size
    loader.dataset = dataset  # drop RepeatDataset-style wrappers: one epoch is one batch
    train_cfg = cfg.train_cfg
    if train_cfg.get('type', '').startswith('IterBased') or 'max_iters' in train_cfg:
        train_cfg.update(max_iters=1, val_interval=10 ** 9)
    else:
        train_cfg.update(max_epochs=1, val_interval=10 ** 9)
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader', 'test_evaluator', 'test_cfg'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.pop('load_from', None)
    cfg.resume = False
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    # The Runner formats the config with yapf three times when it starts, ~1 s each for a long
    # pipeline (RandAugment policy lists): cosmetic, and skipped here.
    return Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)
