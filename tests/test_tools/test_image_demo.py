"""tools/image_demo.py draws a prediction of each task on a real photograph (the one matplotlib
ships), through the stock inferencers, with the demo configs and random weights; bad input is
one ``error:`` line."""
import os.path as osp
import subprocess
import sys

import matplotlib.cbook
import mmcv
import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PHOTO = str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))
CONFIGS = {
    'det': 'configs/demo/mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py',
    'seg': 'configs/demo/upernet_kat-micro_shapes-ade20k-128x128.py',
    'cls': 'configs/demo/kat-micro_shapes-imagenet-64px.py',
}


def image_demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, 'tools/image_demo.py', *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize('task', sorted(CONFIGS))
def test_draws_the_prediction_over_the_photograph(task, tmp_path):
    out_file = str(tmp_path / f'{task}.png')
    # Score threshold 0: the untrained detector's boxes are drawn too.
    extra = ['--score-thr', '0'] if task == 'det' else []
    result = image_demo(PHOTO, CONFIGS[task], '--out-file', out_file, '--device', 'cpu', *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out_file in result.stdout
    photo, drawn = mmcv.imread(PHOTO), mmcv.imread(out_file)
    assert drawn.shape == photo.shape
    changed = np.any(drawn != photo, axis=2).mean()
    assert changed > 0.001, f'{task}: nothing drawn ({changed:.4%} of the pixels changed)'


def test_writes_to_outputs_by_default(tmp_path):
    result = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'image_demo.py'), PHOTO,
                             osp.join(REPO, CONFIGS['cls']), '--device', 'cpu'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert osp.isfile(tmp_path / 'outputs' / 'grace_hopper_kat-micro_shapes-imagenet-64px.png')


@pytest.mark.parametrize('args, message', [
    (['missing.jpg', CONFIGS['cls']], "image 'missing.jpg' does not exist"),
    ([PHOTO, CONFIGS['cls'], 'missing.pth'], "checkpoint 'missing.pth' does not exist"),
    ([PHOTO, CONFIGS['cls'], '--score-thr', '0.5'], '--score-thr is for detectors'),
    ([PHOTO, CONFIGS['cls'], '--out-file', 'pred.txt'], 'the extension must be one of'),
    ([PHOTO, 'configs/demo/missing.py'], 'does not exist'),
])
def test_bad_input_is_one_error_line(args, message):
    result = image_demo(*args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert message in result.stderr


def test_a_file_that_is_not_an_image_is_one_error_line(tmp_path):
    not_an_image = tmp_path / 'notes.jpg'
    not_an_image.write_text('not an image')
    result = image_demo(str(not_an_image), CONFIGS['cls'])
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'is not an image file OpenCV can read' in result.stderr
