"""Small shape datasets in the official CIFAR-100, Food-101 and Tiny ImageNet layouts.

Each image holds one shape of ``SHAPE_CLASSES``; the three shapes are the first three classes of
the real dataset (labels 0, 1, 2 / its first three class names), so mmpretrain's stock dataset
classes read the files exactly as they read the real data:

- CIFAR-100: ``cifar-100-python/{train,test,meta}`` pickles (``data`` rows of 3072 bytes, the
  R, G, B planes of a 32x32 image, and ``fine_labels``), read by ``CIFAR100``. mmpretrain checks
  the files against the official release's md5 sums and would download the release when they
  differ: :func:`accept_generated_cifar100` makes it accept generated files.
- Food-101: ``images/<class>/<id>.jpg`` and ``meta/{train,test}.txt`` (``<class>/<id>`` lines),
  read by ``Food101``.
- Tiny ImageNet: the layout of the official ``tiny-imagenet-200`` archive (``wnids.txt``,
  ``words.txt``, ``train/<wnid>/images/*.JPEG`` with ``<wnid>_boxes.txt``, a flat
  ``val/images`` with ``val/val_annotations.txt``, ``test/images``), which
  ``tools/dataset_converters/tiny_imagenet.py`` turns into annotation lists for
  ``CustomDataset``. As in the official set, ``wnids.txt`` is not sorted and one image of each
  split is grayscale.
"""
import contextlib
import hashlib
import os
import os.path as osp
import pickle
from typing import Dict, Iterator, List, Tuple

import numpy as np

from .synthetic_data import SHAPE_CLASSES, draw_single_shape

CIFAR100_FOLDER = 'cifar-100-python'
# Made-up WordNet ids of the shapes (square, circle, triangle); wnids.txt lists them unsorted.
TINY_IMAGENET_WNIDS = ('n09000001', 'n09000002', 'n09000003')
_WNIDS_FILE_ORDER = (2, 0, 1)


def _shapes(rng: np.random.Generator, per_class: int, height: int, width: int) -> Iterator[Tuple[int, int, object]]:
    """(label, index within its class, image) for ``per_class`` images of every shape."""
    for label, shape in enumerate(SHAPE_CLASSES):
        for index in range(per_class):
            yield label, index, draw_single_shape(rng, shape, height, width)


def make_cifar100_style(root: str, num_train_per_class: int = 8, num_test_per_class: int = 2,
                        seed: int = 0) -> str:
    """Write ``root/cifar-100-python/{train,test,meta}`` as the official python release has them.

    The shapes get fine labels 0, 1, 2 (and coarse label 0). Returns ``root``.
    """
    from mmpretrain.datasets.categories import CIFAR100_CATEGORIES

    rng = np.random.default_rng(seed)
    folder = osp.join(root, CIFAR100_FOLDER)
    os.makedirs(folder, exist_ok=True)
    for split, per_class in (('train', num_train_per_class), ('test', num_test_per_class)):
        rows, labels, names = [], [], []
        for label, index, image in _shapes(rng, per_class, 32, 32):
            # CIFAR stores each image as its R, G and B planes, row by row.
            rows.append(np.asarray(image).transpose(2, 0, 1).reshape(-1))
            labels.append(label)
            names.append(f'{SHAPE_CLASSES[label]}_s_{index:06d}.png')
        entry = dict(filenames=names, batch_label=f'{split}ing batch 1 of 1', fine_labels=labels,
                     coarse_labels=[0] * len(labels), data=np.stack(rows).astype(np.uint8))
        with open(osp.join(folder, split), 'wb') as f:
            pickle.dump(entry, f, protocol=2)
    meta = dict(fine_label_names=list(CIFAR100_CATEGORIES),
                coarse_label_names=[f'superclass_{i}' for i in range(20)])
    with open(osp.join(folder, 'meta'), 'wb') as f:
        pickle.dump(meta, f, protocol=2)
    return root


def _md5(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


@contextlib.contextmanager
def accept_generated_cifar100(root: str) -> Iterator[None]:
    """Within the context, mmpretrain's ``CIFAR100`` accepts the files under ``root`` (written
    by :func:`make_cifar100_style`) instead of the official ones.

    The dataset verifies every file against the md5 sums of the official release (and downloads
    the release on a mismatch); here those sums are those of the generated files, so the check
    still runs and still rejects any other file.
    """
    from mmpretrain.datasets import CIFAR100

    folder = osp.join(root, CIFAR100_FOLDER)
    saved = CIFAR100.train_list, CIFAR100.test_list, CIFAR100.meta
    CIFAR100.train_list = [['train', _md5(osp.join(folder, 'train'))]]
    CIFAR100.test_list = [['test', _md5(osp.join(folder, 'test'))]]
    CIFAR100.meta = dict(saved[2], md5=_md5(osp.join(folder, 'meta')))
    try:
        yield
    finally:
        CIFAR100.train_list, CIFAR100.test_list, CIFAR100.meta = saved


def make_food101_style(root: str, num_train_per_class: int = 8, num_test_per_class: int = 2,
                       image_size: Tuple[int, int] = (64, 64), seed: int = 0) -> str:
    """Write ``root/images/<class>/<id>.jpg``, ``root/meta/{train,test}.txt`` and
    ``root/meta/classes.txt`` as the official ``food-101`` archive has them.

    The shapes are Food-101's first three classes (apple_pie, baby_back_ribs, baklava).
    Returns ``root``.
    """
    from mmpretrain.datasets.categories import FOOD101_CATEGORIES

    rng = np.random.default_rng(seed)
    height, width = image_size
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    image_id = 100000
    for split, per_class in (('train', num_train_per_class), ('test', num_test_per_class)):
        lines = []
        for label, _, image in _shapes(rng, per_class, height, width):
            name = FOOD101_CATEGORIES[label]
            os.makedirs(osp.join(root, 'images', name), exist_ok=True)
            image_id += 1
            image.save(osp.join(root, 'images', name, f'{image_id}.jpg'), quality=95)
            lines.append(f'{name}/{image_id}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(FOOD101_CATEGORIES) + '\n')
    return root


def make_tiny_imagenet_style(root: str, num_train_per_class: int = 8, num_val_per_class: int = 2,
                             num_test: int = 2, seed: int = 0) -> str:
    """Write the official ``tiny-imagenet-200`` layout (64x64 JPEGs) under ``root``.

    Classes are ``TINY_IMAGENET_WNIDS`` (square, circle, triangle), listed unsorted in
    ``wnids.txt`` like the official file. Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    wnid_of_label = dict(enumerate(TINY_IMAGENET_WNIDS))
    os.makedirs(osp.join(root, 'val', 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'test', 'images'), exist_ok=True)
    with open(osp.join(root, 'wnids.txt'), 'w') as f:
        f.write('\n'.join(TINY_IMAGENET_WNIDS[i] for i in _WNIDS_FILE_ORDER) + '\n')
    with open(osp.join(root, 'words.txt'), 'w') as f:
        f.write(''.join(f'{wnid_of_label[label]}\t{shape}\n' for label, shape in enumerate(SHAPE_CLASSES)))

    boxes: Dict[str, List[str]] = {wnid: [] for wnid in TINY_IMAGENET_WNIDS}
    for label, index, image in _shapes(rng, num_train_per_class, 64, 64):
        wnid = wnid_of_label[label]
        folder = osp.join(root, 'train', wnid, 'images')
        os.makedirs(folder, exist_ok=True)
        name = f'{wnid}_{index}.JPEG'
        (image.convert('L') if label == 0 and index == 0 else image).save(osp.join(folder, name))
        boxes[wnid].append(f'{name}\t0\t0\t63\t63')
    for wnid, lines in boxes.items():
        with open(osp.join(root, 'train', wnid, f'{wnid}_boxes.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')

    annotations = []
    val_images = list(_shapes(rng, num_val_per_class, 64, 64))
    order = rng.permutation(len(val_images))  # the official val images are not grouped by class
    for number, position in enumerate(order):
        label, _, image = val_images[position]
        name = f'val_{number}.JPEG'
        (image.convert('L') if number == 0 else image).save(osp.join(root, 'val', 'images', name))
        annotations.append(f'{name}\t{wnid_of_label[label]}\t0\t0\t63\t63')
    with open(osp.join(root, 'val', 'val_annotations.txt'), 'w') as f:
        f.write('\n'.join(annotations) + '\n')

    for number in range(num_test):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        draw_single_shape(rng, SHAPE_CLASSES[label], 64, 64).save(
            osp.join(root, 'test', 'images', f'test_{number}.JPEG'))
    return root
