"""tools/demo.py runs each task end to end (shortened here), prints the summary table and saves
prediction images."""
import glob
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHORT = {
    'det': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.test_cfg.rcnn.score_thr=0.0'],
    'seg': ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'param_scheduler.0.end=1',
            'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'],
    'cls': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
}
METRIC = {'det': 'bbox mAP@0.5', 'seg': 'mIoU (%)', 'cls': 'top-1 (%)'}


@pytest.mark.parametrize('task', sorted(SHORT))
def test_demo_task_prints_metrics_and_saves_predictions(task, tmp_path):
    result = subprocess.run(
        [sys.executable, 'tools/demo.py', '--task', task, '--data-dir', str(tmp_path / 'data'),
         '--work-dir', str(tmp_path / 'work'), '--num-images', '2', '--cfg-options',
         'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4', *SHORT[task]],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table_rows = [line for line in result.stdout.splitlines() if METRIC[task] in line]
    assert table_rows, result.stdout[-2000:]
    value = float(table_rows[-1].split('|')[2])
    assert value >= 0
    images = glob.glob(str(tmp_path / 'work' / task / 'predictions' / '*.png'))
    assert len(images) == 2
