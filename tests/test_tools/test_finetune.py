"""Fine-tuning with ``load_from`` on another number of classes: the task heads keep their
initialisation with one warning line; any other mismatch is refused with every key and a
``checkpoint_fit`` setting that works; tools/test.py and --resume stay strict; the config's
classes must be the data's and the heads must predict that many."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmrkan.apis import (ToolError, build_model_for_checks, check_before_run, check_checkpoint_fits, load_config,
                         load_datasets, set_work_dir)
from mmrkan.apis.checkpoint_fit import ignore_patterns
from mmrkan.engine import safe_torch_load
from mmrkan.testing import make_imagenet_style
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools', 'train.py')
DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')
PLAIN_DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_r18-tiny_fpn_shapes-coco.py')
CLS_CONFIG = osp.join(REPO, 'configs', 'demo', 'kat-micro_shapes-imagenet-64px.py')
SEG_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_kat-micro_shapes-ade20k-128x128.py')
HEAD_KEYS = [f'roi_head.{head}.{layer}.{kind}' for head, layer in (('bbox_head', 'fc_cls'), ('bbox_head', 'fc_reg'),
                                                                   ('mask_head', 'conv_logits'))
             for kind in ('bias', 'weight')]


def saved_model(config: str, path, **model_options) -> str:
    """A Runner-style checkpoint of the config's model (random weights)."""
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({f'model.{k}': v for k, v in model_options.items()})
    init_default_scope(cfg.default_scope)
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {'epoch': 12}}, str(path))
    return str(path)


@pytest.fixture(scope='module')
def three_class_detector(tmp_path_factory) -> str:
    return saved_model(DET_CONFIG, tmp_path_factory.mktemp('det3') / 'epoch_12.pth')


@pytest.fixture(scope='module')
def two_class_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp('cfg') / 'mask-rcnn_two-shapes.py'
    path.write_text(f"""_base_ = ['{DET_CONFIG}']
classes = ('square', 'circle')
model = dict(roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)))
train_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
""")
    return str(path)


def test_load_from_a_3_class_detector_into_a_2_class_config_trains_with_one_warning(
        capsys, three_class_detector, two_class_config, shapes_coco, tmp_path):
    status, out, err = run_script(capsys, TRAIN, two_class_config, '--work-dir', tmp_path, '--data-root',
                                  shapes_coco, '--cfg-options', f'load_from={three_class_detector}',
                                  'train_cfg.max_epochs=1')
    assert status == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if line.startswith('warning: ')]
    assert warnings == [f'warning: load_from {three_class_detector}: 6 keys of the task heads are for 3 classes '
                        f'there, 2 in the config, and keep their initialisation: {", ".join(HEAD_KEYS)}']
    assert 'size mismatch' not in out + err and 'do not match exactly' not in out + err
    trained = safe_torch_load(str(tmp_path / 'epoch_1.pth'), map_location='cpu')['state_dict']
    assert trained['roi_head.bbox_head.fc_cls.weight'].shape[0] == 3  # 2 classes + background


@pytest.mark.parametrize('setting, options', [('checkpoint', {}), ('--resume', {'resume': True})])
def test_test_and_resume_stay_strict_about_the_class_count(setting, options, three_class_detector,
                                                           two_class_config, shapes_coco, tmp_path):
    cfg = load_config(two_class_config, dict(load_from=three_class_detector, **options), data_root=shapes_coco)
    set_work_dir(cfg, str(tmp_path), two_class_config)
    with pytest.raises(ToolError, match=rf'^{setting} {three_class_detector} does not fit the model: 6 shape '
                                        r'mismatches \(roi_head\.bbox_head\.fc_cls\.weight \(4, 256\) vs the '
                                        r"model's \(3, 256\)"):
        check_before_run(cfg, 'test' if setting == 'checkpoint' else 'train')


def test_other_mismatches_list_every_key_and_a_checkpoint_fit_setting_that_works(three_class_detector, tmp_path):
    cfg = Config.fromfile(DET_CONFIG)
    model = build_model_for_checks(cfg)
    state_dict = safe_torch_load(three_class_detector)['state_dict']
    state_dict['neck.fpn_convs.0.conv.weight'] = torch.zeros(64, 64, 1, 1)  # not a head: refused
    state_dict['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(5, 256)  # 4 classes: accepted
    state_dict['roi_head.bbox_head.fc_cls.bias'] = torch.zeros(5)
    del state_dict['rpn_head.rpn_conv.bias']
    checkpoint = str(tmp_path / 'other.pth')
    torch.save({'state_dict': state_dict}, checkpoint)
    with pytest.raises(ToolError) as error:
        check_checkpoint_fits(model, checkpoint, setting='load_from', model_cfg=cfg.model)
    message = str(error.value)
    assert ('1 model keys missing from it (rpn_head.rpn_conv.bias); 1 shape mismatches '
            "(neck.fpn_convs.0.conv.weight (64, 64, 1, 1) vs the model's (64, 64, 3, 3))") in message
    setting = re.search(r'checkpoint_fit = dict\(ignore_keys=\[.*\]\)$', message).group(0)
    assert setting == ("checkpoint_fit = dict(ignore_keys=[r'neck\\.fpn_convs\\.0\\.conv\\.weight$', "
                       "r'rpn_head\\.rpn_conv\\.bias$'])")
    exec(setting, {}, namespace := {})
    cfg.checkpoint_fit = namespace['checkpoint_fit']
    kept = check_checkpoint_fits(model, checkpoint, ignore_patterns(cfg), 'load_from', model_cfg=cfg.model)
    assert kept == {'roi_head.bbox_head.fc_cls.weight': (3, 4), 'roi_head.bbox_head.fc_cls.bias': (3, 4)}


def test_a_long_list_of_mismatched_keys_goes_to_a_file_it_names(tmp_path):
    # The plain detector's checkpoint in the RKAN detector: 236 keys, all under backbone.
    checkpoint = saved_model(PLAIN_DET_CONFIG, tmp_path / 'plain.pth')
    cfg = Config.fromfile(DET_CONFIG)
    model = build_model_for_checks(cfg)
    with pytest.raises(ToolError) as error:
        check_checkpoint_fits(model, checkpoint, setting='load_from', model_cfg=cfg.model, report_dir=str(tmp_path))
    message = str(error.value)
    report = re.search(r'all (\d+) are listed in (\S+)\. ', message)
    assert report and report.group(2) == str(tmp_path / 'checkpoint_fit_plain.txt'), message
    listed = open(report.group(2)).read()
    missing = {k for k in model.state_dict() if not k.endswith('num_batches_tracked')} - set(
        safe_torch_load(checkpoint)['state_dict'])
    assert all(f'  {key}\n' in listed for key in missing) and int(report.group(1)) == len(
        [line for line in listed.splitlines() if line.startswith('  ')])
    assert message.endswith(r"add to the config: checkpoint_fit = dict(ignore_keys=[r'backbone\.'])")


# The config's classes and the data's.


def test_a_coco_config_without_the_data_classes_names_both_lists(shapes_coco):
    cfg = load_config(PLAIN_DET_CONFIG, {f'{loader}.dataset.metainfo': None for loader in
                                         ('train_dataloader', 'val_dataloader', 'test_dataloader')},
                      data_root=shapes_coco)
    with pytest.raises(ToolError, match=r"^train_dataloader\.dataset: the config's classes \(person, bicycle, car, .*"
                                        r'80 in all\) are not all categories of \S+instances_train2017\.json, which '
                                        r'has \(square, circle, triangle\)'):
        load_datasets(cfg, ['train_dataloader'])


def test_heads_must_predict_the_data_classes(two_class_config, shapes_coco, tmp_path):
    cfg = load_config(two_class_config, {'model.roi_head.mask_head.num_classes': 3}, data_root=shapes_coco)
    set_work_dir(cfg, str(tmp_path), two_class_config)
    with pytest.raises(ToolError, match=r'^model\.roi_head\.mask_head\.num_classes=3 but train_dataloader\.dataset '
                                        r'has 2 classes \(square, circle\): set num_classes=2'):
        check_before_run(cfg, 'train')


@pytest.mark.parametrize('classes, message', [
    (('square', 'circle', 'triangle'), r"the config's classes \(square, circle, triangle\) are not the class "
                                       r"folders of \S+ \(circle, square, triangle\), whose sorted order gives"),
    (('circle', 'square'), r"the config's classes \(circle, square\) are not the class folders of \S+ "
                           r'\(circle, square, triangle\)'),
])
def test_imagenet_style_class_folders_must_be_the_classes(classes, message, tmp_path):
    root = make_imagenet_style(str(tmp_path / 'folders'), num_train_per_class=1, num_val_per_class=1)
    cfg = load_config(CLS_CONFIG, {'train_dataloader.dataset.metainfo.classes': classes}, data_root=root)
    (tmp_path / 'folders' / 'meta' / 'train.txt').unlink()  # read the class folders
    with pytest.raises(ToolError, match=rf'^train_dataloader\.dataset: {message}'):
        load_datasets(cfg, ['train_dataloader'])


def test_a_segmentation_palette_that_does_not_match_the_classes_is_named(shapes_ade20k):
    cfg = load_config(SEG_CONFIG, {'train_dataloader.dataset.metainfo.classes': ('background', 'square', 'circle')},
                      data_root=shapes_ade20k)  # the palette keeps the config's 4 colours
    with pytest.raises(ToolError, match=r'^train_dataloader\.dataset \(BaseSegDataset\): palette does not match '
                                        r"classes as metainfo is \{'classes': \('background', 'square', 'circle'\)"):
        load_datasets(cfg, ['train_dataloader'])
