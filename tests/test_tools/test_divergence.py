"""Training runs that diverge (tools/train.py, DivergenceCheckHook): they stop at once with one line
naming the epoch, the iteration, the loss terms and the last finite checkpoint (exit status 2);
max_keep_ckpts never rotates the last finite checkpoint away; an empty validation says why, and
stops the run where it means divergence."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.hooks import Hook

from mmrkan.apis import build_runner, check_before_run, load_config, set_work_dir
from mmrkan.engine import TrainingDiverged, safe_torch_load
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools', 'train.py')
CLS_CONFIG = osp.join(REPO, 'configs', 'demo', 'kat-micro_shapes-imagenet-64px.py')
DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')


def checkpoints(work_dir) -> list:
    return sorted(glob.glob(osp.join(str(work_dir), '*.pth')))


def assert_finite(checkpoint: str) -> None:
    state_dict = safe_torch_load(checkpoint, map_location='cpu')['state_dict']
    assert all(torch.isfinite(v).all() for v in state_dict.values() if torch.is_floating_point(v))


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err, err[-3000:]
    return errors[0]


def test_diverging_classifier_stops_and_keeps_a_finite_checkpoint(capsys, shapes_imagenet, tmp_path):
    # The run: the demo classifier (max_keep_ckpts=1) at lr 1e3, a checkpoint every epoch.
    # Its loss is NaN from the third epoch on; without the hook it trained on and kept only NaN.
    status, _, err = run_script(capsys, TRAIN, CLS_CONFIG, '--work-dir', tmp_path, '--data-root', shapes_imagenet,
                                '--cfg-options', 'optim_wrapper.optimizer.lr=1000', 'train_cfg.max_epochs=8',
                                'default_hooks.checkpoint.interval=1')
    assert status == 2, err[-3000:]
    error = one_error_line(err)
    match = re.fullmatch(r'error: (loss|the gradient norm) is (nan|inf|-inf) at epoch (\d+) iteration 1 '
                         r'\(loss=\S+\); the last finite checkpoint is (\S+)', error)
    assert match, error
    epoch, checkpoint = int(match.group(3)), match.group(4)
    assert checkpoints(tmp_path) == [checkpoint] == [str(tmp_path / f'epoch_{epoch - 1}.pth')]
    assert_finite(checkpoint)


class PoisonWeightsHook(Hook):
    """Makes every weight NaN right after iteration ``iteration`` (1-based) was applied, as a NaN
    gradient does when no gradient norm is measured (no ``clip_grad``)."""
    priority = 'HIGHEST'

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            with torch.no_grad():
                for parameter in runner.model.parameters():
                    parameter.fill_(float('nan'))


@pytest.mark.parametrize('interval, epoch, where', [(1, 2, 'at epoch 2 iteration 1'),
                                                  (2, 3, 'at the end of epoch 3')])
def test_non_finite_weights_are_caught_before_the_checkpoint_rotation(interval, epoch, where, shapes_imagenet,
                                                                     tmp_path):
    # One iteration per epoch; the weights go NaN in epoch ``epoch`` while the loss of that
    # iteration was still finite. mmengine's CheckpointHook deletes the previous checkpoint
    # before it writes the next. Every 2nd iteration checked: the end-of-epoch check catches it.
    cfg = load_config(CLS_CONFIG, {'optim_wrapper.clip_grad': None, 'train_cfg.max_epochs': 4,
                                   'default_hooks.checkpoint.interval': 1,
                                   'custom_hooks': [dict(type='DivergenceCheckHook', interval=interval)]},
                      data_root=shapes_imagenet)
    set_work_dir(cfg, str(tmp_path), CLS_CONFIG)
    runner = build_runner(cfg, check_before_run(cfg, 'train'))
    runner.register_hook(PoisonWeightsHook(iteration=epoch))
    with pytest.raises(TrainingDiverged) as error:
        runner.train()
    last = str(tmp_path / f'epoch_{epoch - 1}.pth')
    assert 'the weights are not finite' in str(error.value) and where in str(error.value)
    assert str(error.value).endswith(f'the last finite checkpoint is {last}')
    assert checkpoints(tmp_path) == [last]
    assert_finite(last)


def test_empty_validation_of_a_diverged_detector_stops_the_run(capsys, shapes_coco, tmp_path):
    # The detector: at lr 1e3 its loss grows to 1e13 but stays finite, and the
    # validation finds nothing ("results ... empty"); the run went on with exit 0.
    status, _, err = run_script(capsys, TRAIN, DET_CONFIG, '--work-dir', tmp_path, '--data-root', shapes_coco,
                                '--cfg-options', 'optim_wrapper.optimizer.lr=1000', 'train_cfg.max_epochs=2',
                                'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1')
    assert status == 2, err[-3000:]
    error = one_error_line(err)
    assert re.search(r'validation after epoch 1 produced no results: the model predicted nothing on any of the '
                     r'4 images; the training loss grew from \S+ to \S+: the run diverged', error), error
    assert error.endswith(f'the last checkpoint is {tmp_path / "epoch_1.pth"}')


def test_empty_validation_of_a_healthy_run_only_says_why(capsys, shapes_coco, tmp_path):
    # No detection scores above 1: nothing predicted, as early in a training; the run goes on.
    status, out, err = run_script(capsys, TRAIN, DET_CONFIG, '--work-dir', tmp_path, '--data-root', shapes_coco,
                                  '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                                  'model.test_cfg.rcnn.score_thr=1.0')
    assert status == 0, err[-3000:]
    assert 'validation after epoch 1 produced no results: the model predicted nothing on any of the 4 images' in out
    assert checkpoints(tmp_path) == [str(tmp_path / 'epoch_1.pth')]
