"""Multi-process data-parallel training (gloo, CPU) through tools/dist_train.sh, distributed
evaluation through tools/dist_test.sh, and resuming an interrupted run with tools/train.py."""
import glob
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch

from mmrkan.testing import make_coco_style, make_imagenet_style

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')
CLS_CONFIG = osp.join(REPO, 'configs', 'demo', 'kat-micro_shapes-imagenet-64px.py')
NUM_VAL = 5  # odd: the distributed sampler pads one rank, the evaluator must drop the duplicate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=osp.dirname(osp.abspath(__file__)) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def coco_odd_val(tmp_path_factory) -> str:
    return make_coco_style(str(tmp_path_factory.mktemp('coco_odd')), num_train=8, num_val=NUM_VAL,
                           image_size=(96, 128))


def det_options(root: str) -> list:
    ann = f'{root}/annotations/instances_val2017.json'
    return ['--cfg-options', *[f'{loader}.dataset.data_root={root}/' for loader in
                               ('train_dataloader', 'val_dataloader', 'test_dataloader')],
            f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
            'model.test_cfg.rcnn.score_thr=0.0', 'train_dataloader.batch_size=2',
            'val_dataloader.batch_size=1', 'test_dataloader.batch_size=1']


@pytest.fixture(scope='module')
def probed_det_config(tmp_path_factory) -> str:
    config = tmp_path_factory.mktemp('ddp_cfg') / 'det_probed.py'
    config.write_text(f"""_base_ = ['{DET_CONFIG}']
custom_imports = dict(imports=['mmrkan', 'probe_hooks'])
custom_hooks = [dict(type='DumpRankStateHook')]
""")
    return str(config)


@pytest.fixture(scope='module')
def two_process_run(probed_det_config, coco_odd_val, tmp_path_factory) -> str:
    work_dir = str(tmp_path_factory.mktemp('ddp'))
    result = run('bash', 'tools/dist_train.sh', probed_det_config, '2', '--work-dir', work_dir,
                 *det_options(coco_odd_val), 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
                 'default_hooks.checkpoint.interval=2')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work_dir


def test_both_ranks_end_with_identical_weights(two_process_run):
    rank0 = torch.load(osp.join(two_process_run, 'rank0_parameters.pth'))
    rank1 = torch.load(osp.join(two_process_run, 'rank1_parameters.pth'))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)


def test_validation_split_between_ranks_covers_every_image(two_process_run):
    ids = [json.load(open(osp.join(two_process_run, f'rank{r}_val_ids.json'))) for r in (0, 1)]
    assert ids[0] and ids[1], 'each rank must evaluate part of the validation set'
    assert set(ids[0]) | set(ids[1]) == set(range(1, NUM_VAL + 1))


def test_distributed_test_gathers_each_sample_exactly_once(two_process_run, probed_det_config, coco_odd_val,
                                                         tmp_path):
    out = tmp_path / 'predictions.pkl'
    result = run('bash', 'tools/dist_test.sh', probed_det_config, osp.join(two_process_run, 'epoch_2.pth'), '2',
                 '--work-dir', str(tmp_path), '--out', str(out), *det_options(coco_odd_val))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert sorted(p['img_id'] for p in predictions) == list(range(1, NUM_VAL + 1))
    assert 'coco/bbox_mAP' in result.stdout


@pytest.fixture(scope='module')
def deterministic_cls_config(tmp_path_factory) -> str:
    root = make_imagenet_style(str(tmp_path_factory.mktemp('cls_data')), num_train_per_class=4,
                               num_val_per_class=1)
    config = tmp_path_factory.mktemp('cls_cfg') / 'kat_deterministic.py'
    # Random augmentations draw from RNG states that a resume does not restore: use the test
    # pipeline for training, so an interrupted run can match an uninterrupted one exactly.
    config.write_text(f"""_base_ = ['{CLS_CONFIG}']
custom_imports = dict(imports=['mmrkan', 'probe_hooks'])
randomness = dict(seed=0, deterministic=True)
train_dataloader = dict(batch_size=4, dataset=dict(data_root='{root}', pipeline={{{{_base_.test_pipeline}}}}))
val_dataloader = dict(dataset=dict(data_root='{root}'))
test_dataloader = dict(dataset=dict(data_root='{root}'))
train_cfg = dict(max_epochs=4, val_interval=4)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[1, 3], gamma=0.5)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=4))
custom_hooks = [dict(type='InterruptAfterEpochHook', epoch=10 ** 9)]
""")
    return str(config)


def epoch_losses(work_dir: str) -> dict:
    losses = {}
    for scalars in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for line in open(scalars):
            record = json.loads(line)
            if 'loss' in record:
                losses[record['step']] = (record['loss'], record['lr'])
    return losses


def test_resume_after_interruption_matches_uninterrupted_run(deterministic_cls_config, tmp_path):
    straight, interrupted = str(tmp_path / 'straight'), str(tmp_path / 'interrupted')
    result = run(sys.executable, 'tools/train.py', deterministic_cls_config, '--work-dir', straight)
    assert result.returncode == 0, result.stderr[-3000:]

    crash = run(sys.executable, 'tools/train.py', deterministic_cls_config, '--work-dir', interrupted,
                '--cfg-options', 'custom_hooks.0.type=InterruptAfterEpochHook', 'custom_hooks.0.epoch=2')
    assert crash.returncode != 0 and 'interrupted after epoch 2' in crash.stderr
    assert osp.isfile(osp.join(interrupted, 'epoch_2.pth')) and not osp.isfile(osp.join(interrupted, 'epoch_3.pth'))

    resumed = run(sys.executable, 'tools/train.py', deterministic_cls_config, '--work-dir', interrupted, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 2' in resumed.stdout + resumed.stderr

    expected, got = epoch_losses(straight), epoch_losses(interrupted)
    assert len(expected) == 12 and sorted(got) == sorted(expected)  # 3 iterations x 4 epochs
    for step, (loss, lr) in expected.items():
        assert got[step][1] == pytest.approx(lr), f'lr differs at iteration {step}'
        assert got[step][0] == pytest.approx(loss, rel=1e-5), f'loss differs at iteration {step}'


CHECKOUT_PYTHON = osp.join(REPO, '.venv', 'bin', 'python')


def without_active_environment(path: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'CONDA_PREFIX', 'PYTHON')}
    env['PATH'] = path
    return env


@pytest.mark.skipif(not osp.exists(CHECKOUT_PYTHON), reason='the checkout has no .venv (tools/setup_env.sh makes it)')
def test_launch_scripts_use_the_checkouts_environment_when_none_is_active(tmp_path):
    # `python` on PATH is a system python without torch ("No module named 'torch'" before).
    fake = tmp_path / 'bin' / 'python'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "No module named torch" >&2\nexit 1\n')
    fake.chmod(0o755)
    env = without_active_environment(f'{fake.parent}:/usr/bin:/bin')
    result = subprocess.run(['bash', 'tools/dist_train.sh', CLS_CONFIG, '1', '--help'], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'usage: train.py' in result.stdout


@pytest.mark.parametrize('env, expected', [
    ({}, CHECKOUT_PYTHON),
    ({'PYTHON': '/opt/py/bin/python3'}, '/opt/py/bin/python3'),
    ({'VIRTUAL_ENV': '/somewhere/venv'}, 'python'),
    ({'CONDA_PREFIX': '/opt/conda/envs/x'}, 'python'),
])
def test_which_python_the_launch_scripts_run(env, expected):
    if expected == CHECKOUT_PYTHON and not osp.exists(CHECKOUT_PYTHON):
        pytest.skip('the checkout has no .venv')
    result = subprocess.run(['bash', '-c', 'source tools/python_env.sh && echo "$PYTHON"'], cwd=REPO,
                            env=dict(without_active_environment('/usr/bin:/bin'), **env), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == expected, result.stderr
