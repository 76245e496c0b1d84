"""tools/demo.py runs each task end to end (shortened here), with one progress bar per task on
screen and mmengine's log only in the work dir, prints the summary table, saves prediction images,
and repeats its results under the configs' seed."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHORT = {
    'det': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.test_cfg.rcnn.score_thr=0.0'],
    'seg': ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'param_scheduler.0.end=1',
            'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'],
    'cls': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
}
METRIC = {'det': 'bbox mAP@0.5', 'seg': 'mIoU (%)', 'cls': 'top-1 (%)'}
TRAIN_LOG_LINE = '(train)'  # mmengine's iteration lines: "Epoch(train) [1][10/40] ..." / "Iter(train) ..."


def run_demo(task: str, tmp_path, *extra: str, work: str = 'work', options: tuple = ()) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, 'tools/demo.py', '--task', task, '--data-dir', str(tmp_path / 'data'),
         '--work-dir', str(tmp_path / work), '--num-images', '2', *extra, '--cfg-options',
         'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4',
         'default_hooks.logger.interval=1', *SHORT[task], *options],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def log_text(work_dir: str) -> str:
    (log_file, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log_file) as f:
        return f.read()


@pytest.mark.parametrize('task', sorted(SHORT))
def test_demo_task_shows_a_progress_bar_prints_metrics_and_saves_predictions(task, tmp_path):
    result = run_demo(task, tmp_path)
    table_rows = [line for line in result.stdout.splitlines() if METRIC[task] in line]
    assert table_rows, result.stdout[-2000:]
    value = float(table_rows[-1].split('|')[2])
    assert value >= 0
    images = glob.glob(str(tmp_path / 'work' / task / 'predictions' / '*.png'))
    assert len(images) == 2
    # The screen has the bar (its last state: iterations done, the loss), not mmengine's log...
    bars = [line for line in result.stdout.splitlines() if line.startswith(task) and 'iters' in line]
    assert len(bars) == 1 and 'done' in bars[0], result.stdout[-2000:]
    screen = result.stdout + result.stderr
    assert TRAIN_LOG_LINE not in screen and 'mmengine - ' not in screen, screen[-3000:]
    assert 'pkg_resources is deprecated' not in screen, screen[-3000:]  # mmengine's import noise
    # ... which is complete in the work dir's log file, with what pycocotools printed.
    log = log_text(str(tmp_path / 'work' / task))
    assert TRAIN_LOG_LINE in log and 'Config:' in log
    if task == 'det':
        assert 'Average Precision' in log


def test_verbose_prints_the_log_instead_of_the_bar(tmp_path):
    result = run_demo('cls', tmp_path, '--verbose')
    assert TRAIN_LOG_LINE in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith('cls') and 'iters' in line]


def trained_weights(work_dir: str) -> dict:
    (checkpoint, ) = glob.glob(osp.join(work_dir, 'cls', 'epoch_*.pth'))
    return torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']


def test_the_seed_repeats_the_run(tmp_path):
    # Training data augmentation, data order and initialisation all depend on the seed.
    for work, seed in (('first', 0), ('second', 0), ('other_seed', 1)):
        run_demo('cls', tmp_path, work=work, options=(f'randomness.seed={seed}', ))
    first, second, other = (trained_weights(str(tmp_path / work)) for work in ('first', 'second', 'other_seed'))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)
