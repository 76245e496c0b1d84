"""The generated CIFAR-100, Food-101 and Tiny ImageNet layouts, read by mmpretrain's stock
dataset classes, and tools/misc/generate_data.py for them."""
import hashlib
import os
import os.path as osp
import pickle

import numpy as np
import pytest
from PIL import Image

from mmrkan.testing import (SHAPE_CLASSES, TINY_IMAGENET_WNIDS, accept_generated_cifar100, make_cifar100_style,
                            make_food101_style, make_tiny_imagenet_style)
from mmrkan.testing.synthetic_data import draw_single_shape
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def tree_digest(root) -> str:
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(folder, name)
            digest.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.mark.parametrize('maker', [make_cifar100_style, make_food101_style, make_tiny_imagenet_style])
def test_same_seed_same_files_other_seed_other_files(maker, tmp_path):
    first = tree_digest(maker(str(tmp_path / 'a'), 2, 1, seed=3))
    assert tree_digest(maker(str(tmp_path / 'b'), 2, 1, seed=3)) == first
    assert tree_digest(maker(str(tmp_path / 'c'), 2, 1, seed=4)) != first


def test_cifar100_reads_with_mmpretrain_only_while_accepted(tmp_path):
    from mmpretrain.datasets import CIFAR100

    root = make_cifar100_style(str(tmp_path), num_train_per_class=2, num_test_per_class=1, seed=5)
    official = CIFAR100.train_list, CIFAR100.test_list, CIFAR100.meta
    with accept_generated_cifar100(root):
        train = CIFAR100(data_root=root, split='train', download=False)
        test = CIFAR100(data_root=root, split='test', download=False)
    assert (CIFAR100.train_list, CIFAR100.test_list, CIFAR100.meta) == official
    assert [train[i]['gt_label'] for i in range(len(train))] == [0, 0, 1, 1, 2, 2]
    assert len(test) == 3
    # The rows hold the R, G and B planes: mmpretrain's HWC image is the drawn image.
    expected = np.asarray(draw_single_shape(np.random.default_rng(5), SHAPE_CLASSES[0], 32, 32))
    np.testing.assert_array_equal(train[0]['img'], expected)
    with open(osp.join(root, 'cifar-100-python', 'meta'), 'rb') as f:
        assert len(pickle.load(f)['fine_label_names']) == 100
    # Outside the context the official checksums apply, and generated files are refused.
    with pytest.raises(RuntimeError, match='Cannot find CIFAR100'):
        CIFAR100(data_root=root, split='train', download=False)


def test_food101_reads_with_mmpretrain(tmp_path):
    from mmpretrain.datasets import Food101

    root = make_food101_style(str(tmp_path), num_train_per_class=2, num_test_per_class=1)
    train = Food101(data_root=root, split='train')
    test = Food101(data_root=root, split='test')
    assert [train[i]['gt_label'] for i in range(len(train))] == [0, 0, 1, 1, 2, 2]
    assert len(test) == 3 and osp.isfile(test[0]['img_path'])
    assert [test[i]['img_path'].split(os.sep)[-2] for i in range(3)] == ['apple_pie', 'baby_back_ribs', 'baklava']


def test_tiny_imagenet_has_the_official_layout(tmp_path):
    root = make_tiny_imagenet_style(str(tmp_path), num_train_per_class=2, num_val_per_class=2, num_test=1)
    wnids = open(osp.join(root, 'wnids.txt')).read().split()
    assert sorted(wnids) == list(TINY_IMAGENET_WNIDS) and wnids != sorted(wnids)
    for wnid in wnids:
        images = sorted(os.listdir(osp.join(root, 'train', wnid, 'images')))
        assert images == [f'{wnid}_0.JPEG', f'{wnid}_1.JPEG']
        assert osp.isfile(osp.join(root, 'train', wnid, f'{wnid}_boxes.txt'))
    annotations = [line.split('\t') for line in open(osp.join(root, 'val', 'val_annotations.txt')).read().splitlines()]
    assert len(annotations) == 6 and all(len(fields) == 6 and fields[1] in wnids for fields in annotations)
    assert sorted(os.listdir(osp.join(root, 'val', 'images'))) == sorted(fields[0] for fields in annotations)
    assert os.listdir(osp.join(root, 'test', 'images')) == ['test_0.JPEG']
    modes = {Image.open(osp.join(root, 'val', 'images', fields[0])).mode for fields in annotations}
    assert modes == {'L', 'RGB'}  # like the official set, a few images are grayscale


@pytest.mark.parametrize('layout, expected', [
    ('cifar100', 'cifar-100-python/train'), ('food101', 'meta/test.txt'), ('tiny-imagenet', 'val/val_annotations.txt')])
def test_generate_data_writes_the_layout(capsys, tmp_path, layout, expected):
    tool = osp.join(REPO, 'tools', 'misc', 'generate_data.py')
    status, out, err = run_script(capsys, tool, layout, tmp_path / layout, '--num-train', 1, '--num-val', 1)
    assert status == 0, err[-2000:]
    assert osp.isfile(tmp_path / layout / expected), out
    status, _, err = run_script(capsys, tool, layout, tmp_path / 'sized', '--size', 48, 48)
    if layout == 'food101':
        assert status == 0, err[-2000:]
    else:
        assert status == 2 and '--size is not allowed' in err, err
