"""tools/train.py and tools/test.py end to end on generated data, and their errors on bad input."""
import glob
import json
import os.path as osp
import subprocess

import pytest

from mmrkan.testing.tools import run_python

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')


def run_tool(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    return run_python(*args, cwd=cwd)


@pytest.fixture(scope='module')
def trained_detector(shapes_coco, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('det_run'))
    result = run_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, '--tensorboard', '--data-root', shapes_coco,
                      '--cfg-options', 'train_cfg.max_epochs=6', 'train_cfg.val_interval=6',
                      'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=6',
                      'param_scheduler.0.end=4', 'param_scheduler.1.end=6',
                      # a 12-iteration model scores low: keep every detection so COCO eval has input
                      'model.test_cfg.rcnn.score_thr=0.0')
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


def logged(work_dir: str, key: str) -> list:
    (scalars, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    return [r[key] for r in records if key in r]


def test_training_loss_goes_down_and_validation_computes_coco_metrics(trained_detector):
    losses = logged(trained_detector, 'loss')
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    for metric in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'):
        (value, ) = logged(trained_detector, metric)
        assert 0.0 <= value <= 1.0


def test_training_curves_are_written_locally_and_for_tensorboard(trained_detector):
    (vis_data, ) = glob.glob(osp.join(trained_detector, '*', 'vis_data'))
    assert osp.getsize(osp.join(vis_data, 'scalars.json')) > 0
    events = glob.glob(osp.join(vis_data, '**', 'events.out.tfevents.*'), recursive=True)
    assert events and osp.getsize(events[0]) > 0


def test_test_tool_evaluates_a_runner_checkpoint_from_another_directory(trained_detector, shapes_coco, tmp_path):
    # --data-root moves the dataloader and the evaluator's annotation file together.
    checkpoint = osp.join(trained_detector, 'epoch_6.pth')
    result = run_tool(osp.join(REPO, 'tools', 'test.py'), DET_CONFIG, checkpoint, '--work-dir', str(tmp_path),
                      '--out', str(tmp_path / 'predictions.pkl'), '--show-dir', 'drawn', '--data-root', shapes_coco,
                      '--cfg-options', 'model.test_cfg.rcnn.score_thr=0.0', cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'coco/bbox_mAP' in result.stdout + result.stderr
    assert (tmp_path / 'predictions.pkl').stat().st_size > 0
    assert len(glob.glob(str(tmp_path / '*' / 'drawn' / '*.jpg'))) == 4  # every validation image


def expect_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert 'Traceback' not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


def test_unknown_type_in_config(shapes_coco, tmp_path):
    config = tmp_path / 'bad_type.py'
    config.write_text(f"_base_ = ['{DET_CONFIG}']\nmodel = dict(backbone=dict(type='NoSuchKANNet'))\n")
    result = run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'), '--data-root', shapes_coco)
    expect_user_error(result, 'unknown type', 'NoSuchKANNet')


def test_missing_data_root(tmp_path):
    result = run_tool('tools/train.py', DET_CONFIG, '--work-dir', str(tmp_path / 'w'), '--data-root',
                      str(tmp_path / 'no_such_data'))
    expect_user_error(result, 'data not found', "train_dataloader.dataset.data_root='", 'no_such_data')


def test_missing_config(tmp_path):
    expect_user_error(run_tool('tools/train.py', str(tmp_path / 'nope.py')), 'does not exist')
