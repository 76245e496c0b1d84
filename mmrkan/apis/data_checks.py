"""The data of a run, loaded and checked before the Runner starts, with the config's own dataset
classes (so every annotation format they read is covered).

Before training or testing (``tools/train.py``, ``tools/test.py``): every dataset's annotation
file is loaded (one line naming the file when it cannot be parsed or yields no sample), every
image and label map the annotations name must exist, the config's classes must be categories
of the annotation file (COCO) or the class folders (ImageNet-style folders), and the model's
task heads must predict as many classes as the dataset has. ``tools/misc/check_dataset.py
--decode`` also decodes every image and label map (:func:`decode_problems`).

The datasets are built here and again by the Runner: loading the annotations costs twice (on
COCO train2017 a few tens of seconds), which is small next to the run it protects.
"""
import copy
import itertools
import json
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.fileio import get
from mmengine.logging import MMLogger
from mmengine.registry import DATASETS, init_default_scope
from mmengine.utils import track_parallel_progress, track_progress
from torch import nn

from .checkpoint_fit import task_heads
from .config_checks import DATALOADERS
from .errors import ToolError, describe_exception

# Keys of a data sample that name the files the pipeline reads.
FILE_KEYS = ('img_path', 'seg_map_path')
# Missing or bad files named in a pre-run error (tools/misc/check_dataset.py lists them all).
NAMED_FILES = 5
# Value of a label map pixel that the segmentation losses and metrics ignore.
IGNORE_INDEX = 255
_LOGGER_NAMES = (f'mmrkan-data-checks-{i}' for i in itertools.count())


def _shorten(items: Sequence[Any], limit: int = 10) -> str:
    shown = ', '.join(map(str, items[:limit]))
    return f'({shown}{f", ... {len(items)} in all" if len(items) > limit else ""})'


def use_fresh_logger() -> None:
    """Make a new mmengine logger, warnings only, on the current stdout, the current one: the
    checks log through the current logger (registries, datasets), which may be a logger of an
    earlier run in this process, writing to a stream that is gone."""
    MMLogger.get_instance(next(_LOGGER_NAMES), log_level='WARNING')


def _leaves(node: Any, path: str) -> Iterator[Tuple[str, dict]]:
    """``(config path, config)`` of the datasets that read files: those inside wrappers
    (RepeatDataset, ConcatDataset, ClassBalancedDataset...)."""
    if not isinstance(node, dict):
        return
    inner = [(f'{path}.dataset', node['dataset'])] if isinstance(node.get('dataset'), dict) else []
    inner += [(f'{path}.datasets.{i}', d) for i, d in enumerate(node.get('datasets') or [])]
    if not inner:
        yield path, node
    for inner_path, inner_node in inner:
        yield from _leaves(inner_node, inner_path)


def _is_local(dataset: BaseDataset) -> bool:
    backend_args = getattr(dataset, 'backend_args', None)
    remote = isinstance(backend_args, dict) and backend_args.get('backend', 'local') != 'local'
    return not remote and '://' not in str(getattr(dataset, 'data_root', '') or '')


def _source(dataset: BaseDataset) -> str:
    """What the dataset reads its samples from: the annotation file, else the image folder."""
    ann_file = getattr(dataset, 'ann_file', '')
    if ann_file:
        return f'annotation file {ann_file}'
    prefix = getattr(dataset, 'data_prefix', None) or {}
    folders = [v for v in (prefix.values() if isinstance(prefix, dict) else [prefix]) if v]
    return f'folder {folders[0]}' if folders else f'data root {getattr(dataset, "data_root", "")}'


def _coco_json(ann_file: str) -> Optional[dict]:
    """The parsed COCO-style annotation file, or None when it is not one (or unreadable)."""
    if not str(ann_file).endswith('.json') or not osp.isfile(ann_file):
        return None
    try:
        with open(ann_file) as f:
            content = json.load(f)
    except (ValueError, OSError):
        return None
    return content if isinstance(content, dict) else None


def _class_problem(path: str, dataset: BaseDataset) -> Optional[str]:
    """The config's classes that are not in the annotation file's categories (COCO) or the
    class folders (ImageNet-style folders), naming both lists."""
    classes = tuple(dataset.metainfo.get('classes') or ())
    folders = getattr(dataset, 'folder_to_idx', None)
    if folders and classes and tuple(sorted(folders, key=folders.get)) != classes:
        found = tuple(sorted(folders, key=folders.get))
        return (f'{path}: the config\'s classes {_shorten(classes)} are not the class folders of '
                f'{dataset.img_prefix} {_shorten(found)}, whose sorted order gives the labels: set '
                f'metainfo=dict(classes={found!r}) in the dataset')
    content = _coco_json(getattr(dataset, 'ann_file', '')) if classes else None
    if content is None:
        return None
    names = [c.get('name') for c in content.get('categories') or [] if isinstance(c, dict)]
    missing = [c for c in classes if c not in names]
    if not missing:
        return None
    return (f'{path}: the config\'s classes {_shorten(classes)} are not all categories of '
            f'{dataset.ann_file}, which has {_shorten(names)} ({len(missing)} missing: '
            f'{_shorten(missing, 5)}): set metainfo=dict(classes=(...)) in the datasets to your '
            'categories, and num_classes in the model\'s heads (README, "Fine-tune on your own data")')


def _empty_reason(dataset: BaseDataset) -> str:
    content = _coco_json(getattr(dataset, 'ann_file', ''))
    if content is None:
        return ''
    images, annotations = content.get('images') or [], content.get('annotations') or []
    if not images:
        return ': it lists no images'
    filter_cfg = getattr(dataset, 'filter_cfg', None) or {}
    if filter_cfg.get('filter_empty_gt'):
        return (f': its {len(images)} images and {len(annotations)} annotations were filtered out '
                f'(filter_cfg={dict(filter_cfg)}: no image has an annotation of the config\'s classes)')
    return ''


def _samples(dataset: BaseDataset) -> Iterator[dict]:
    """The data infos of the dataset's samples (without the copy ``get_data_info`` makes)."""
    data_list = getattr(dataset, 'data_list', None)
    if isinstance(data_list, list) and len(data_list) == len(dataset):
        yield from data_list
    else:
        for index in range(len(dataset)):
            yield dataset.get_data_info(index)


def missing_files(dataset: BaseDataset) -> Tuple[List[str], int]:
    """The files the dataset's samples name that do not exist, and how many they name."""
    missing, total = [], 0
    for info in _samples(dataset):
        for key in FILE_KEYS:
            if info.get(key):
                total += 1
                if not osp.isfile(info[key]):
                    missing.append(info[key])
    return missing, total


def _label_problem(path: str, dataset: BaseDataset) -> Optional[str]:
    """Labels of an annotation list (mmpretrain) outside the config's classes."""
    classes = dataset.metainfo.get('classes')
    if not classes:
        return None
    labels = set()
    for info in _samples(dataset):
        label = info.get('gt_label')
        if isinstance(label, (int, np.integer)):
            labels.add(int(label))
    outside = sorted(label for label in labels if not 0 <= label < len(classes))
    if not outside:
        return None
    return (f'{path}: {_source(dataset)} has labels {_shorten(outside, 5)} outside the config\'s '
            f'{len(classes)} classes {_shorten(tuple(classes))} (labels 0..{len(classes) - 1})')


def build_dataset(path: str, dataset_cfg: dict) -> BaseDataset:
    """Build and load one dataset config with its own class; a failure is one line naming the
    file it was reading."""
    lazy = copy.deepcopy(dataset_cfg)
    # Lazily first: the paths are resolved without reading; an empty data list must not fail
    # in serialisation ("need at least one array to concatenate") but be reported as empty.
    lazy.update(lazy_init=True, serialize_data=False)
    try:
        dataset = DATASETS.build(lazy)
    except Exception as error:
        raise ToolError(f'{path} ({dataset_cfg.get("type")}): {describe_exception(error)}') from error
    try:
        dataset.full_init()
    except Exception as error:
        problem = _class_problem(path, dataset)
        if problem is not None:
            raise ToolError(problem) from error
        ann_file = str(getattr(dataset, 'ann_file', '') or '')
        empty = ' (the file is empty)' if osp.isfile(ann_file) and not osp.getsize(ann_file) else ''
        raise ToolError(f'{path} ({type(dataset).__name__}): cannot load its {_source(dataset)}{empty}: '
                        f'{type(error).__name__}: {describe_exception(error)}') from error
    return dataset


def load_datasets(cfg: Config, loaders: Sequence[str] = DATALOADERS,
                  check_files: bool = True) -> List[Tuple[str, BaseDataset]]:
    """Build and load the datasets of ``loaders`` and check them: classes, not empty, and
    (``check_files``) every file named by the annotations exists. Returns ``(config path,
    dataset)`` of each dataset that reads files (inside wrappers), each config once."""
    use_fresh_logger()
    init_default_scope(cfg.default_scope)
    datasets = []
    seen = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict) or not isinstance(loader_cfg.get('dataset'), dict):
            continue
        for path, dataset_cfg in _leaves(loader_cfg['dataset'], f'{loader}.dataset'):
            if dataset_cfg in seen:  # test_dataloader = val_dataloader
                continue
            seen.append(dataset_cfg)
            dataset = build_dataset(path, dataset_cfg)
            problem = _class_problem(path, dataset) or _label_problem(path, dataset)
            if problem is not None:
                raise ToolError(problem)
            if len(dataset) == 0:
                raise ToolError(f'{path} ({type(dataset).__name__}) has no samples: nothing to read in its '
                                f'{_source(dataset)}{_empty_reason(dataset)}')
            if check_files and _is_local(dataset):
                missing, total = missing_files(dataset)
                if missing:
                    raise ToolError(
                        f'{path}: {len(missing)} of the {total} files of its samples (from its {_source(dataset)}) '
                        f'do not exist {_shorten(missing, NAMED_FILES)}; tools/misc/check_dataset.py '
                        'CONFIG lists them all')
            datasets.append((path, dataset))
    return datasets


def check_head_classes(cfg: Config, model: nn.Module, datasets: Sequence[Tuple[str, BaseDataset]]) -> None:
    """The model's task heads (the modules whose config sets ``num_classes``) must predict as
    many classes as the datasets have."""
    heads = task_heads(model, cfg.model)
    for path, dataset in datasets:
        classes = dataset.metainfo.get('classes')
        if not classes:
            continue
        for name, head in heads.items():
            if head.num_classes != len(classes):
                raise ToolError(
                    f'model.{name}.num_classes={head.num_classes} but {path} has {len(classes)} classes '
                    f'{_shorten(tuple(classes))}: set num_classes={len(classes)} in the model\'s heads, or '
                    'the dataset\'s metainfo classes (README, "Fine-tune on your own data")')


def _decoders(dataset: BaseDataset) -> Tuple[str, str, str]:
    """(image flag, image backend, label map backend) of the dataset's loading transforms."""
    flag, image_backend, label_backend = 'color', 'cv2', 'pillow'
    for transform in getattr(getattr(dataset, 'pipeline', None), 'transforms', []):
        name = type(transform).__name__
        if name.startswith('LoadImageFromFile'):
            flag = getattr(transform, 'color_type', flag)
            image_backend = getattr(transform, 'imdecode_backend', image_backend)
        elif name == 'LoadAnnotations':
            label_backend = getattr(transform, 'imdecode_backend', label_backend)
    return flag, image_backend, label_backend


def _decode_sample(task: Tuple[Optional[str], Optional[str], str, str, str, Optional[int], bool]) -> List[str]:
    """Problems of one sample's image and label map (a top-level function: it runs in workers)."""
    image, label_map, flag, image_backend, label_backend, num_classes, reduce_zero_label = task
    problems = []
    if image:
        try:
            decoded = mmcv.imfrombytes(get(image), flag=flag, backend=image_backend)
            if decoded is None:
                problems.append(f'{image}: cannot be decoded ({image_backend}: corrupt or truncated)')
        except Exception as error:  # noqa: B902 - whatever the decoder raises is the finding
            problems.append(f'{image}: {type(error).__name__}: {" ".join(str(error).split())}')
    if label_map:
        try:
            labels = mmcv.imfrombytes(get(label_map), flag='unchanged', backend=label_backend)
        except Exception as error:  # noqa: B902
            problems.append(f'{label_map}: {type(error).__name__}: {" ".join(str(error).split())}')
        else:
            if labels is None:
                problems.append(f'{label_map}: cannot be decoded ({label_backend}: corrupt or truncated)')
            elif num_classes is not None:
                values = np.unique(labels)
                if reduce_zero_label:  # 0 is ignored, 1..n are the classes
                    bad = [int(v) for v in values if v != IGNORE_INDEX and not 0 <= v <= num_classes]
                else:
                    bad = [int(v) for v in values if v != IGNORE_INDEX and not 0 <= v < num_classes]
                if bad:
                    allowed = f'1..{num_classes}' if reduce_zero_label else f'0..{num_classes - 1}'
                    problems.append(f'{label_map}: label values {bad} are not classes ({allowed}, or '
                                    f'{IGNORE_INDEX} for ignored pixels)')
    return problems


def decode_problems(dataset: BaseDataset, workers: int = 1) -> List[str]:
    """Decode every image and label map of ``dataset`` as its pipeline would (with a progress
    bar); returns one line per bad file. Label maps must hold class indices of the config's
    classes (or 255), unless the dataset maps labels itself (a class subset)."""
    flag, image_backend, label_backend = _decoders(dataset)
    classes = dataset.metainfo.get('classes')
    label_map = getattr(dataset, 'label_map', None)
    num_classes = len(classes) if classes and not label_map else None
    reduce_zero_label = bool(getattr(dataset, 'reduce_zero_label', False))
    tasks = []
    for info in _samples(dataset):
        tasks.append((info.get('img_path'), info.get('seg_map_path'), flag, image_backend, label_backend,
                      num_classes, reduce_zero_label))
    if workers > 1 and len(tasks) > 1:
        results = track_parallel_progress(_decode_sample, tasks, nproc=workers)
    else:
        results = track_progress(_decode_sample, tasks)
    return [problem for problems in results for problem in problems]


def describe_dataset(path: str, dataset: BaseDataset) -> Dict[str, Any]:
    """What ``check_dataset.py`` prints of a dataset."""
    classes = dataset.metainfo.get('classes') or ()
    return dict(path=path, type=type(dataset).__name__, source=_source(dataset), samples=len(dataset),
                classes=tuple(classes))
