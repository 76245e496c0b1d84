import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from mmrkan.testing import SHAPE_CLASSES, make_ade20k_style, make_coco_style, make_imagenet_style


def tree_digest(root) -> str:
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.mark.parametrize('maker', [make_coco_style, make_ade20k_style, make_imagenet_style])
def test_same_seed_same_files_other_seed_other_files(maker, tmp_path):
    small = dict(num_train_per_class=2, num_val_per_class=1) if maker is make_imagenet_style \
        else dict(num_train=3, num_val=1)
    first = tree_digest(maker(str(tmp_path / 'a'), seed=3, **small))
    assert tree_digest(maker(str(tmp_path / 'b'), seed=3, **small)) == first
    assert tree_digest(maker(str(tmp_path / 'c'), seed=4, **small)) != first


def test_coco_style_reads_with_mmdet_coco_dataset(shapes_coco):
    from mmdet.datasets import CocoDataset
    dataset = CocoDataset(data_root=shapes_coco, ann_file='annotations/instances_train2017.json',
                          data_prefix=dict(img='train2017/'), metainfo=dict(classes=SHAPE_CLASSES),
                          pipeline=[], filter_cfg=None)
    assert len(dataset) == 8
    labels = [inst['bbox_label'] for i in range(len(dataset)) for inst in dataset[i]['instances']]
    assert labels and set(labels) <= {0, 1, 2}
    info = dataset[0]
    height, width = info['height'], info['width']
    for instance in info['instances']:
        x1, y1, x2, y2 = instance['bbox']
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        polygon = np.array(instance['mask'][0]).reshape(-1, 2)
        assert polygon[:, 0].min() >= x1 - 1e-3 and polygon[:, 0].max() <= x2 + 1e-3


def test_ade20k_style_reads_with_mmseg_dataset(shapes_ade20k):
    from mmseg.datasets import ADE20KDataset
    dataset = ADE20KDataset(data_root=shapes_ade20k, pipeline=[],
                            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    assert len(dataset) == 4
    label_map = np.array(Image.open(dataset[0]['seg_map_path']))
    assert set(np.unique(label_map)) <= {0, 1, 2, 3} and label_map.max() > 0


def test_imagenet_style_reads_with_mmpretrain_imagenet(shapes_imagenet):
    from mmpretrain.datasets import ImageNet
    train = ImageNet(data_root=shapes_imagenet, split='train', pipeline=[])
    val = ImageNet(data_root=shapes_imagenet, split='val', pipeline=[])
    assert len(train) == 2 * len(SHAPE_CLASSES) and len(val) == len(SHAPE_CLASSES)
    assert sorted({train[i]['gt_label'] for i in range(len(train))}) == [0, 1, 2]
    assert os.path.isfile(train[0]['img_path'])
