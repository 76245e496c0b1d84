"""Bad data is named before training: annotation files that do not load or yield nothing, images
and label maps that do not exist (tools/train.py and tools/test.py refuse to start), files that
do not decode and label values that are no class (tools/misc/check_dataset.py --decode); during a
run an image that fails to load is reported with its path."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmrkan.apis import ToolError, load_config, load_datasets
from mmrkan.testing import make_ade20k_style, make_coco_style
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools', 'train.py')
CHECK = osp.join(REPO, 'tools', 'misc', 'check_dataset.py')
DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')
SEG_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_kat-micro_shapes-ade20k-128x128.py')


def truncate(path: str) -> str:
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return path


@pytest.fixture
def coco(tmp_path) -> str:
    return make_coco_style(str(tmp_path / 'coco'), num_train=4, num_val=2, image_size=(64, 64))


@pytest.fixture
def ade(tmp_path) -> str:
    return make_ade20k_style(str(tmp_path / 'ade'), num_train=2, num_val=2, image_size=(64, 64))


def error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err, err[-3000:]
    return errors[0]


def test_a_missing_image_is_refused_before_training_and_a_truncated_one_by_check_dataset(capsys, coco, tmp_path):
    missing = osp.join(coco, 'train2017', '000000000002.jpg')
    os.remove(missing)
    truncated = truncate(osp.join(coco, 'train2017', '000000000003.jpg'))
    work_dir = tmp_path / 'work'
    status, out, err = run_script(capsys, TRAIN, DET_CONFIG, '--work-dir', work_dir, '--data-root', coco,
                                  '--cfg-options', 'train_cfg.max_epochs=1')
    assert status == 2 and 'Epoch(train)' not in out, err[-3000:]
    assert error_line(err) == (
        f'error: train_dataloader.dataset: 1 of the 4 files of its samples (from its annotation file '
        f'{coco}/annotations/instances_train2017.json) do not exist ({missing}); tools/misc/check_dataset.py '
        'CONFIG lists them all')
    status, out, err = run_script(capsys, CHECK, DET_CONFIG, '--data-root', coco, '--decode')
    assert status == 1, err[-3000:]
    assert err.splitlines() == [f'{missing}: does not exist', f'{truncated}: cannot be decoded (cv2: corrupt or '
                                'truncated)', f'2 bad files (working directory {os.getcwd()})']
    assert 'train_dataloader.dataset: CocoDataset, 4 samples' in out


def test_check_dataset_passes_good_data(capsys, coco):
    status, out, err = run_script(capsys, CHECK, DET_CONFIG, '--data-root', coco, '--decode', '--workers', 2)
    assert status == 0, err[-3000:]
    assert out.rstrip().endswith('every image and label map exists and decodes')


def test_label_maps_that_do_not_decode_or_hold_no_class(capsys, ade):
    truncated = truncate(osp.join(ade, 'annotations', 'training', 'ADE_train_00000000.png'))
    strange = osp.join(ade, 'annotations', 'validation', 'ADE_valid_00000001.png')
    Image.fromarray(np.full((64, 64), 7, dtype=np.uint8)).save(strange)
    status, _, err = run_script(capsys, CHECK, SEG_CONFIG, '--data-root', ade, '--decode')
    assert status == 1, err[-3000:]
    assert f'{truncated}: OSError: image file is truncated' in err.splitlines()
    assert f'{strange}: label values [7] are not classes (0..3, or 255 for ignored pixels)' in err.splitlines()


@pytest.mark.parametrize('content, message', [
    ('', r'cannot load its annotation file \S+instances_val2017\.json \(the file is empty\): JSONDecodeError'),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}, '
     '{"id": 3, "name": "triangle"}]}', r'has no samples: nothing to read in its annotation file '
                                         r'\S+instances_val2017\.json: it lists no images'),
])
def test_an_annotation_file_that_does_not_load_or_lists_nothing_is_named(content, message, coco):
    with open(osp.join(coco, 'annotations', 'instances_val2017.json'), 'w') as f:
        f.write(content)
    cfg = load_config(DET_CONFIG, data_root=coco)
    with pytest.raises(ToolError, match=rf'^val_dataloader\.dataset( \(CocoDataset\))?:? {message}'):
        load_datasets(cfg, ['train_dataloader', 'val_dataloader'])


def test_every_annotation_filtered_out_is_explained(coco):
    # Annotations of none of the config's classes: filter_empty_gt leaves no training image.
    annotation_file = osp.join(coco, 'annotations', 'instances_train2017.json')
    with open(annotation_file) as f:
        content = json.load(f)
    content['annotations'] = []
    with open(annotation_file, 'w') as f:
        json.dump(content, f)
    with pytest.raises(ToolError, match=r'^train_dataloader\.dataset \(CocoDataset\) has no samples: .* its 4 images '
                                        r'and 0 annotations were filtered out'):
        load_datasets(load_config(DET_CONFIG, data_root=coco), ['train_dataloader'])


@pytest.mark.parametrize('task', ['image', 'label map'])
def test_a_file_that_fails_to_load_during_training_is_named(task, capsys, coco, ade, tmp_path):
    if task == 'image':
        config, root = DET_CONFIG, coco
        bad = truncate(osp.join(coco, 'train2017', '000000000001.jpg'))
        loader = 'LoadImageFromFile'
    else:
        config, root = SEG_CONFIG, ade
        bad = truncate(osp.join(ade, 'annotations', 'training', 'ADE_train_00000000.png'))
        loader = 'LoadAnnotations'
    status, _, err = run_script(capsys, TRAIN, config, '--work-dir', tmp_path / 'work', '--data-root', root,
                                '--cfg-options', 'train_dataloader.batch_size=2')
    assert status == 2, err[-3000:]
    error = error_line(err)
    assert error.startswith(f'error: {loader} could not load ') and bad in error, error
