"""Mistakes a user can make with tools/train.py and tools/test.py end in one ``error:`` line
(exit 2) before the Runner's set-up; ``--debug`` shows the traceback. Plus the checks behind
them (checkpoint fit, ``--data-root``, ``--cfg-options`` keys) in-process."""
import os.path as osp
import re
import subprocess

import matplotlib.cbook
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmrkan.apis import (ToolError, build_model_for_checks, check_before_run, check_checkpoint_fits,
                         check_feature_channels, load_config, set_data_root, set_work_dir)
from mmrkan.apis.checkpoint_fit import ignore_patterns
from mmrkan.engine.checkpoint import CheckpointError
from mmrkan.testing.tools import run_python, run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo')
DET_CONFIG = osp.join(DEMO, 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')
PLAIN_DET_CONFIG = osp.join(DEMO, 'mask-rcnn_r18-tiny_fpn_shapes-coco.py')
CLS_CONFIG = osp.join(DEMO, 'kat-micro_shapes-imagenet-64px.py')
RKAN_COCO_CONFIG = osp.join(REPO, 'configs', 'rkan', 'mask-rcnn_rkanet-50_fpn_1x_coco.py')


def run_tool(*args: str, cwd: str = REPO, env: dict = None) -> subprocess.CompletedProcess:
    return run_python(*args, cwd=cwd, env=env, timeout=600)


def tool(name: str) -> str:
    return osp.join(REPO, 'tools', name)


def expect_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run ended with exit 2 and exactly one line on stderr: ``error: ...`` with every fragment;
    no deprecation warning of the packages we import (pkg_resources) on the screen."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert 'pkg_resources' not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def build_model(config: str) -> torch.nn.Module:
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def plain_detector_checkpoint(tmp_path_factory) -> str:
    """A Runner-style checkpoint of the demo detector without RKAN: another config's model."""
    path = str(tmp_path_factory.mktemp('plain') / 'plain_epoch_1.pth')
    torch.save({'state_dict': build_model(PLAIN_DET_CONFIG).state_dict(), 'meta': {'epoch': 1}}, path)
    return path


@pytest.fixture(scope='module')
def detector_state_dict() -> dict:
    return build_model(DET_CONFIG).state_dict()


# Bad config values, raised by our modules or by mmengine while building the model.


def test_bad_model_setting_ends_in_one_line(tmp_path):
    # The data root does not exist: the model is checked first, before anything is read.
    result = run_tool(tool('train.py'), DET_CONFIG, '--work-dir', str(tmp_path), '--data-root',
                      str(tmp_path / 'nowhere'), '--cfg-options', 'model.backbone.stages=7')
    expect_user_error(result, 'model.backbone (RKAN)', 'stages=(7,)', 'allowed 0..3', '--debug')


@pytest.mark.parametrize('options,fragments', [
    ({'model.backbone.reduce_factor': 3}, ['model.backbone (RKAN)', 'reduce_factor=3', '64 input channels']),
    ({'model.neck.bogus_setting': 1}, ['model.neck (FPN)', 'bogus_setting']),
    ({'model.backbone.backbone.type': 'NoSuchNet'}, ['model.backbone.backbone (NoSuchNet)', 'unknown type']),
    ({'model.backbone.backbone.depth': 19}, ['model.backbone.backbone (ResNet): invalid depth 19 for resnet']),
], ids=['rkan-reduce-factor', 'unknown-argument', 'unknown-type', 'library-error'])
def test_bad_model_setting_is_named_by_its_config_dict(options, fragments):
    with pytest.raises(ToolError) as error:
        build_model_for_checks(load_config(DET_CONFIG, options))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_kat_group_count_that_does_not_divide_the_width(tmp_path):
    result = run_tool(tool('train.py'), CLS_CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
                      'model.backbone.num_groups=5')
    expect_user_error(result, 'model.backbone (KAT)', 'num_groups')


@pytest.mark.parametrize('how', ['--debug', 'MMRKAN_DEBUG=1'])
def test_debug_shows_the_traceback(how, tmp_path):
    args = [tool('train.py'), DET_CONFIG, '--work-dir', str(tmp_path), '--cfg-options', 'model.backbone.stages=7']
    result = run_tool(*args, '--debug') if how == '--debug' else run_tool(*args, env={'MMRKAN_DEBUG': '1'})
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'Traceback' in result.stderr and 'stages=(7,)' in result.stderr
    assert '_normalise_stage_indices' in result.stderr  # where it was raised


def test_unknown_cfg_options_key_ends_in_one_line(tmp_path):
    result = run_tool(tool('train.py'), DET_CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
                      'train_dataloder.batch_size=2')
    expect_user_error(result, "--cfg-options train_dataloder.batch_size: the config has no 'train_dataloder'",
                      "did you mean 'train_dataloader'")


@pytest.mark.parametrize('option,fragments', [
    ('default_hooks.checkpont.interval', ["default_hooks has no 'checkpont'", "did you mean 'checkpoint'"]),
    ('param_scheduler.5.end', ["param_scheduler has no '5'", 'it has: 0, 1']),
    ('train_cfg.max_epochs.x', ['train_cfg.max_epochs is', 'not a dict or list']),
    ('train_cfg.max_epoch', ['train_cfg is a EpochBasedTrainLoop, which takes no', "did you mean 'max_epochs'"]),
    ('val_cfg.fp61', ['val_cfg is a ValLoop, which takes no', "did you mean 'fp16'"]),
])
def test_unknown_cfg_options_key(option, fragments):
    with pytest.raises(ToolError) as error:
        load_config(DET_CONFIG, {option: 1})
    for fragment in [f'--cfg-options {option}:', *fragments]:
        assert fragment in str(error.value)


@pytest.mark.parametrize('option, message', [
    # Dicts without a type, whose class the Runner chooses (the classifier's loops, the optim wrapper).
    ('train_cfg.max_epoch', "train_cfg has no type, so the Runner builds a EpochBasedTrainLoop from it "
                            "(by_epoch=True), which takes no 'max_epoch'; did you mean 'max_epochs'?"),
    ('val_cfg.fp61', "val_cfg has no type, so the Runner builds a ValLoop from it, which takes no 'fp61'; "
                     "did you mean 'fp16'?"),
    ('optim_wrapper.clip_gradd', "optim_wrapper has no type, so the Runner builds a OptimWrapper from it, which "
                                 "takes no 'clip_gradd'; did you mean 'clip_grad'?"),
    # **kwargs that reach Runner.save_checkpoint (crashed at the first save) or a base class.
    ('default_hooks.checkpoint.intervall', "default_hooks.checkpoint is a CheckpointHook, which takes no "
                                           "'intervall'; did you mean 'interval'?"),
    ('param_scheduler.1.eta_minn', "param_scheduler.1 is a CosineAnnealingLR, which takes no 'eta_minn'; did you "
                                   "mean 'eta_min' or 'eta_min_ratio'?"),
])
def test_settings_of_the_class_that_finally_receives_them(option, message):
    with pytest.raises(ToolError, match=f'^--cfg-options {option}: {re.escape(message)}'):
        load_config(CLS_CONFIG, {option: 1})


@pytest.mark.parametrize('option, suggestion', [
    ({'model.head.num_clases': 2}, "got an unexpected keyword argument 'num_clases'; did you mean 'num_classes'?"),
    ({'model.backbone.type': 'KATT'}, "KATT is not in the mmpretrain::model registry"),
    ({'model.backbone.type': 'KATT'}, "; did you mean 'KAT' or 'KATDet'?"),
])
def test_model_refusals_suggest_the_nearest_name(option, suggestion):
    with pytest.raises(ToolError) as error:
        build_model_for_checks(load_config(CLS_CONFIG, option))
    assert suggestion in str(error.value)


# Data: dataloaders and evaluators.


def test_missing_annotation_files_and_image_folders(tmp_path):
    empty_root = tmp_path / 'empty_dataset'
    empty_root.mkdir()
    result = run_tool(tool('train.py'), DET_CONFIG, '--work-dir', str(tmp_path / 'w'), '--data-root', str(empty_root))
    expect_user_error(result, 'data not found',
                      "train_dataloader.dataset.ann_file='annotations/instances_train2017.json'",
                      "train_dataloader.dataset.data_prefix.img='train2017/'",
                      "val_dataloader.dataset.ann_file=",
                      f"val_evaluator.ann_file='{empty_root}/annotations/instances_val2017.json'")


def test_evaluator_annotation_file_left_behind_from_another_directory(shapes_coco, tmp_path):
    # The README's old advice: override the dataloader's data_root only, and run elsewhere.
    checkpoint = tmp_path / 'any.pth'
    checkpoint.write_text('never read: the data check comes first')
    result = run_tool(tool('test.py'), DET_CONFIG, str(checkpoint), '--work-dir', str(tmp_path / 'w'),
                      '--cfg-options', f'test_dataloader.dataset.data_root={shapes_coco}/', cwd=str(tmp_path))
    expect_user_error(result, "test_evaluator.ann_file='data/shapes_coco/annotations/instances_val2017.json'",
                      '--data-root', str(tmp_path))


def test_missing_pretrained_backbone_is_named_by_its_setting(shapes_coco, tmp_path):
    result = run_tool(tool('train.py'), RKAN_COCO_CONFIG, '--work-dir', str(tmp_path / 'w'), '--data-root',
                      shapes_coco, cwd=str(tmp_path))
    expect_user_error(result, "model.backbone.init_cfg.checkpoint='work_dirs/rkanet-50_8xb32_in1k/epoch_100.pth'",
                      'does not exist')


# Checkpoints that do not fit the model, or are no checkpoints at all.


def test_evaluating_a_checkpoint_of_another_model(plain_detector_checkpoint, shapes_coco, tmp_path):
    result = run_tool(tool('test.py'), DET_CONFIG, plain_detector_checkpoint, '--work-dir', str(tmp_path),
                      '--data-root', shapes_coco)
    message = expect_user_error(result, f'checkpoint {plain_detector_checkpoint} does not fit the model',
                                '116 model keys missing from it (backbone.backbone.conv1.weight',
                                '120 keys the model does not have (backbone.conv1.weight',
                                f'all 236 are listed in {tmp_path}/checkpoint_fit_plain_epoch_1.txt',
                                r"checkpoint_fit = dict(ignore_keys=[r'backbone\.'])")
    assert (tmp_path / 'checkpoint_fit_plain_epoch_1.txt').is_file(), message


@pytest.mark.parametrize('how', ['resume', 'load_from'])
def test_training_from_a_checkpoint_of_another_config(how, plain_detector_checkpoint, shapes_coco, tmp_path):
    start = (['--resume', plain_detector_checkpoint] if how == 'resume' else
             ['--cfg-options', f'load_from={plain_detector_checkpoint}'])
    result = run_tool(tool('train.py'), DET_CONFIG, '--work-dir', str(tmp_path), '--data-root', shapes_coco, *start)
    expect_user_error(result, f'{"--resume" if how == "resume" else "load_from"} {plain_detector_checkpoint} '
                      'does not fit the model')


def _truncated_checkpoint(path) -> None:
    torch.save({'state_dict': {'weight': torch.zeros(1000)}}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize('kind', ['text', 'truncated', 'directory'])
def test_file_that_is_not_a_checkpoint(kind, shapes_coco, tmp_path):
    checkpoint = tmp_path / 'x.pth'
    if kind == 'text':
        checkpoint.write_text('these are notes, not weights\n')
    elif kind == 'truncated':
        _truncated_checkpoint(checkpoint)
    else:
        checkpoint.mkdir()
    result = run_tool(tool('test.py'), DET_CONFIG, str(checkpoint), '--work-dir', str(tmp_path / 'w'),
                      '--data-root', shapes_coco)
    expect_user_error(result, str(checkpoint), 'is not a PyTorch checkpoint')


# The checks in-process.


def test_broken_zip_is_not_a_checkpoint(tmp_path):
    checkpoint = tmp_path / 'broken.pth'
    checkpoint.write_bytes(b'PK\x03\x04 this is not a torch checkpoint')
    with pytest.raises(CheckpointError, match='broken.pth is not a PyTorch checkpoint'):
        check_checkpoint_fits(build_model_for_checks(Config.fromfile(DET_CONFIG)), str(checkpoint))


def test_checkpoint_fit_names_missing_keys_and_accepts_the_ones_the_config_states(detector_state_dict, tmp_path):
    cfg = Config.fromfile(DET_CONFIG)
    model = build_model_for_checks(cfg)
    assert next(model.parameters()).is_meta
    checkpoint = str(tmp_path / 'no_mask_head.pth')
    torch.save({'state_dict': {k: v for k, v in detector_state_dict.items()
                               if not k.startswith('roi_head.mask_head.')}}, checkpoint)
    with pytest.raises(ToolError, match=r'model keys missing from it \(roi_head\.mask_head\.'):
        check_checkpoint_fits(model, checkpoint)
    cfg.checkpoint_fit = dict(ignore_keys=[r'roi_head\.mask_head\.'])
    check_checkpoint_fits(model, checkpoint, ignore_patterns(cfg))


def test_checkpoint_fit_refuses_shape_mismatches_and_extra_keys(detector_state_dict, tmp_path):
    model = build_model_for_checks(Config.fromfile(DET_CONFIG))
    mismatched = dict(detector_state_dict)
    mismatched['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(81, 16)
    with pytest.raises(ToolError, match=r'1 shape mismatches \(roi_head\.bbox_head\.fc_cls\.weight \(81, 16\)'):
        check_checkpoint_fits(model, _saved(mismatched, tmp_path / 'mismatched.pth'))
    extra = dict(detector_state_dict, **{'ema.backbone.weight': torch.zeros(1)})
    with pytest.raises(ToolError, match=r"1 keys the model does not have \(ema\.backbone\.weight\)"):
        check_checkpoint_fits(model, _saved(extra, tmp_path / 'extra.pth'))
    # The model's own state dict, as DDP saves it ("module." prefix, stripped like the Runner).
    ddp = {f'module.{k}': v for k, v in detector_state_dict.items()}
    check_checkpoint_fits(model, _saved(ddp, tmp_path / 'ddp.pth'))


def _saved(state_dict: dict, path) -> str:
    torch.save({'state_dict': state_dict}, str(path))
    return str(path)


@pytest.mark.parametrize('setting', [dict(ignore_key=['x']), dict(ignore_keys='x'), dict(ignore_keys=['(x'])])
def test_bad_checkpoint_fit_setting(setting):
    cfg = Config(dict(checkpoint_fit=setting))
    with pytest.raises(ToolError, match='checkpoint_fit'):
        ignore_patterns(cfg)


def test_data_root_moves_dataloaders_and_the_evaluator_files_under_it(tmp_path):
    cfg = load_config(DET_CONFIG, data_root=str(tmp_path))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == str(tmp_path)
    for evaluator in ('val_evaluator', 'test_evaluator'):
        assert cfg[evaluator].ann_file == str(tmp_path / 'annotations' / 'instances_val2017.json')
    # Explicit --cfg-options still win.
    cfg = load_config(DET_CONFIG, {'test_evaluator.ann_file': 'elsewhere.json'}, data_root=str(tmp_path))
    assert cfg.test_evaluator.ann_file == 'elsewhere.json'


def test_data_root_notes_evaluator_files_outside_the_old_root(tmp_path, capsys):
    cfg = Config.fromfile(DET_CONFIG)
    cfg.val_evaluator.ann_file = '/srv/annotations/val.json'
    set_data_root(cfg, str(tmp_path))
    assert cfg.val_evaluator.ann_file == '/srv/annotations/val.json'
    assert "leaves val_evaluator.ann_file='/srv/annotations/val.json' as it is" in capsys.readouterr().err


def test_data_root_refuses_several_datasets(tmp_path):
    cfg = Config.fromfile(DET_CONFIG)
    cfg.val_dataloader.dataset.data_root = 'data/other/'
    with pytest.raises(ToolError, match='several data roots'):
        set_data_root(cfg, str(tmp_path))


def test_cfg_options_may_add_settings_and_runner_keys():
    assert 'model_wrapper_cfg' not in Config.fromfile(DET_CONFIG)
    cfg = load_config(DET_CONFIG, {'train_cfg.val_begin': 2, 'model_wrapper_cfg.type': 'MMDistributedDataParallel',
                                   'default_hooks.checkpoint.save_last': False, 'param_scheduler.0.end_factor': 1.0,
                                   'model.backbone.init_cfg.type': 'Pretrained', 'param_scheduler.0.end': 3})
    assert cfg.train_cfg.val_begin == 2 and cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained' and cfg.param_scheduler[0].end == 3


# Smaller traps.


def test_resume_in_a_work_dir_without_checkpoints_says_so_and_starts_fresh(shapes_imagenet, tmp_path, capsys):
    # A mistyped --work-dir used to start from scratch without a word (mmdet starts fresh too:
    # preemptible jobs rely on it).
    cfg = load_config(CLS_CONFIG, data_root=shapes_imagenet)
    set_work_dir(cfg, str(tmp_path / 'typo'), CLS_CONFIG)
    cfg.resume, cfg.load_from = True, None
    capsys.readouterr()
    hooks = check_before_run(cfg, 'train')
    assert capsys.readouterr().err.splitlines() == [
        f'warning: --resume: {tmp_path / "typo"} holds no checkpoint to resume (no last_checkpoint file): '
        'training starts from scratch there']
    assert [hook['type'] for hook in hooks] == ['DataLoadErrorHook', 'DivergenceCheckHook']


PHOTO = str(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))


def test_image_demo_refuses_another_models_checkpoint_in_one_line(plain_detector_checkpoint, capsys):
    status, _, err = run_script(capsys, tool('image_demo.py'), PHOTO, DET_CONFIG, plain_detector_checkpoint,
                                '--device', 'cpu')
    assert status == 2, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f'error: checkpoint {plain_detector_checkpoint} does not fit '
                                                   'the model: 116 model keys missing from it')


@pytest.fixture(scope='module')
def nan_classifier_checkpoint(tmp_path_factory) -> str:
    """The last checkpoint of a run that diverged: every weight NaN."""
    path = str(tmp_path_factory.mktemp('nan') / 'epoch_4.pth')
    state_dict = build_model(CLS_CONFIG).state_dict()
    torch.save({'state_dict': {k: v.float().fill_(float('nan')) if torch.is_floating_point(v) else v
                               for k, v in state_dict.items()}}, path)
    return path


@pytest.mark.parametrize('tool_name', ['test.py', 'image_demo.py', 'analysis_tools/visualize_kan.py'])
def test_tools_refuse_a_checkpoint_with_non_finite_weights(tool_name, nan_classifier_checkpoint, shapes_imagenet,
                                                           capsys, tmp_path):
    args = {'test.py': [CLS_CONFIG, nan_classifier_checkpoint, '--work-dir', tmp_path, '--data-root', shapes_imagenet],
            'image_demo.py': [PHOTO, CLS_CONFIG, nan_classifier_checkpoint, '--device', 'cpu'],
            'analysis_tools/visualize_kan.py': [nan_classifier_checkpoint, '--out-dir', tmp_path]}[tool_name]
    status, out, err = run_script(capsys, tool(tool_name), *args)
    assert status == 2, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f'error: checkpoint {nan_classifier_checkpoint} holds non-finite '
                                                   'weights: 72 of its 72 tensors have NaN or infinite values')
    assert not list(tmp_path.glob('*.png'))


KAT_UPERNET = osp.join(REPO, 'configs', 'kat', 'upernet_kat-{}_8xb2-160k_ade20k-512x512.py')


@pytest.mark.parametrize('config, message', [
    # A KAT-T backbone in the KAT-S UperNet config: a raw convolution shape error at the first forward before.
    (KAT_UPERNET.format('small'), 'model.neck.in_channels=[384, 384, 384, 384] but model.backbone (KAT, its '
                                  'embed_dims=192) outputs [192, 192, 192, 192] channels'),
    (osp.join(REPO, 'configs', 'katdet', 'mask-rcnn_katdet-small_simplefpn_3x_coco.py'),
     'model.neck.in_channels=384 but model.backbone (KATDet, its embed_dims=192) outputs 192 channels'),
])
def test_a_neck_that_does_not_take_the_backbone_channels_is_one_line(config, message):
    cfg = load_config(config, {'model.backbone.arch': 'tiny'})
    with pytest.raises(ToolError, match='^' + re.escape(message)):
        check_feature_channels(cfg, build_model_for_checks(cfg))


@pytest.mark.parametrize('arch, parameters', [('tiny', 34774374), ('small', 57072294), ('base', 142365990)])
def test_kat_upernet_configs_take_the_backbone_channels(arch, parameters):
    cfg = Config.fromfile(KAT_UPERNET.format(arch))
    model = build_model_for_checks(cfg)
    check_feature_channels(cfg, model)
    # The metafile's count (tools/analysis_tools/get_flops.py: without the auxiliary head).
    counted = [p for name, p in model.named_parameters() if not name.startswith('auxiliary_head.')]
    assert sum(p.numel() for p in counted) == parameters
