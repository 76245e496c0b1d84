"""tools/dataset_converters/tiny_imagenet.py on a generated miniature of the official
tiny-imagenet-200 folder: the lists it writes, read by mmpretrain's CustomDataset as the Tiny
ImageNet configs read them, and its refusals (nothing written on a bad folder)."""
import os
import os.path as osp

import pytest

from mmrkan.testing import SHAPE_CLASSES, TINY_IMAGENET_WNIDS, make_tiny_imagenet_style
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'dataset_converters', 'tiny_imagenet.py')


@pytest.fixture
def tiny(tmp_path) -> str:
    return make_tiny_imagenet_style(str(tmp_path / 'tiny-imagenet-200'), num_train_per_class=2,
                                    num_val_per_class=2, num_test=1)


def read(path) -> list:
    with open(path) as f:
        return f.read().splitlines()


def test_lists_label_by_sorted_wnid_and_read_with_custom_dataset(capsys, tiny):
    from mmpretrain.datasets import CustomDataset

    status, out, err = run_script(capsys, TOOL, tiny)
    assert status == 0, err[-2000:]
    assert '3 classes, 6 training and 6 validation images' in out
    assert read(osp.join(tiny, 'meta', 'classes.txt')) == sorted(TINY_IMAGENET_WNIDS)
    label_of = {wnid: label for label, wnid in enumerate(sorted(TINY_IMAGENET_WNIDS))}
    assert read(osp.join(tiny, 'meta', 'train.txt'))[:2] == [
        f'train/{TINY_IMAGENET_WNIDS[0]}/images/{TINY_IMAGENET_WNIDS[0]}_{i}.JPEG 0' for i in range(2)]
    annotations = dict(line.split('\t')[:2] for line in read(osp.join(tiny, 'val', 'val_annotations.txt')))
    for split, count in (('train', 6), ('val', 6)):
        dataset = CustomDataset(data_root=tiny, ann_file=f'meta/{split}.txt', data_prefix='')
        assert len(dataset) == count
        for index in range(count):
            info = dataset[index]
            assert osp.isfile(info['img_path'])
            if split == 'val':  # the label of each flat val image is its annotated wnid's
                assert info['gt_label'] == label_of[annotations[osp.basename(info['img_path'])]]
            else:  # train/<wnid>/images/...
                assert info['gt_label'] == label_of[info['img_path'].split(os.sep)[-3]]
    assert len(SHAPE_CLASSES) == len(label_of)


def test_rerun_is_a_no_op_and_changed_lists_need_overwrite(capsys, tiny):
    assert run_script(capsys, TOOL, tiny)[0] == 0
    val = osp.join(tiny, 'meta', 'val.txt')
    original = read(val)
    assert run_script(capsys, TOOL, tiny)[0] == 0
    assert read(val) == original
    with open(val, 'w') as f:
        f.write('edited by hand\n')
    status, _, err = run_script(capsys, TOOL, tiny)
    assert status == 2 and 'val.txt exists and differs' in err and '--overwrite' in err, err
    assert read(val) == ['edited by hand']
    assert run_script(capsys, TOOL, tiny, '--overwrite')[0] == 0
    assert read(val) == original


@pytest.mark.parametrize('damage, message', [
    (lambda root: os.remove(osp.join(root, 'wnids.txt')), 'wnids.txt does not exist'),
    (lambda root: os.rename(osp.join(root, 'train', 'n09000002'), osp.join(root, 'train', 'other')),
     'wnids.txt lists n09000002 but it has no training images'),
    (lambda root: os.remove(osp.join(root, 'val', 'images', 'val_3.JPEG')), 'val/images/val_3.JPEG does not exist'),
    (lambda root: open(osp.join(root, 'val', 'val_annotations.txt'), 'a').write('val_9.JPEG\tn01443537\t0\t0\t1\t1\n'),
     'line 7: n01443537 is not in wnids.txt'),
    (lambda root: open(osp.join(root, 'wnids.txt'), 'a').write('n09000001\n'), 'lists a wnid twice'),
])
def test_bad_folders_are_refused_before_anything_is_written(capsys, tiny, damage, message):
    damage(tiny)
    status, _, err = run_script(capsys, TOOL, tiny)
    assert status == 2 and message in err, err
    assert not osp.exists(osp.join(tiny, 'meta'))


def test_not_a_folder(capsys, tmp_path):
    status, _, err = run_script(capsys, TOOL, tmp_path / 'none')
    assert status == 2 and 'is not a folder' in err, err
