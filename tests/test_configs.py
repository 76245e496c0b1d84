"""Every config under configs/ builds, and every training code path trains one iteration on
generated data on the CPU.

- Configs outside ``configs/rkan`` (demo, KAT, KATDet) each train one iteration, except the
  ViT-S and ViT-B + KAN comparison models (``KAT_NOT_TRAINED``): the code of ViT-T + KAN, which
  trains, at 50M and 200M parameters; tests/test_paper_rows.py builds them on the meta device,
  runs them there and checks their counts.
- ``configs/rkan`` holds the RKAN paper's zoo: ~90 full-size models (up to 146M parameters) on
  six recipes (CIFAR-100, Tiny ImageNet, Food-101, ImageNet, COCO and ADE20K). One iteration of
  each would cost many minutes of CI on 2 cores, and most of them would run no code that another
  does not: RKANet-101-6xL differs from RKANet-101-2xL in a width, ResNet-152 from ResNet-101 in
  a depth, RegNetY-32GF from RegNetY-3.2GF in its arch, the CIFAR-100 ResNet-101 from the Tiny
  ImageNet one in its data. So ``REPRESENTATIVES`` train one iteration: at least one config of
  every training recipe (task, dataset, pipeline, normalisation, batch augments, optimizer,
  schedule: :func:`~mmrkan.testing.zoo.recipe_key`) and one of every kind of model (the backbone
  config without its sizes: depth within a block type, widths, groups, arch, classes, RKAN
  reduce factor and expansion: :func:`~mmrkan.testing.zoo.backbone_kind`), the smallest config
  of each kind: a new kind's representative is its config with the fewest parameters (for
  RegNetY the 19M-parameter RegNetY-3.2GF on ImageNet, never the 142M-parameter 32GF; for an
  attention ResNet its 50-layer ImageNet config, not the 101-layer CIFAR-100 one). Every other
  zoo config builds its full model on the meta device and runs a forward pass there (shapes
  only: a wrong head width or stage count fails): here, or in tests/test_paper_rows.py for the
  configs of the paper's table rows, which also checks their parameter counts.
  ``test_representatives_cover_every_recipe_and_model_kind`` fails when a config brings a recipe
  or a kind of model that no representative trains, and
  ``test_each_kind_of_model_trains_through_its_smallest_config`` when a kind's representative
  is not its smallest config (parameters as configs/rkan/metafile.yml states them).
"""
import copy
import functools
import glob
import os.path as osp
import runpy

import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.runner import Runner

from mmrkan.testing import (accept_generated_cifar100, make_cifar100_style, make_food101_style,
                            make_tiny_imagenet_style)
from mmrkan.testing.configs import tiny_training_config
from mmrkan.testing.zoo import backbone_kind, build_model_on_meta, cached_package_configs, recipe_key

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Meta-device forwards run the KAN ops' PyTorch references (shapes only), which mmrkan announces.
pytestmark = pytest.mark.filterwarnings('ignore:mmrkan._ext has no meta kernels')
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p.split(osp.sep))
ZOO = [p for p in CONFIGS if osp.basename(osp.dirname(p)) == 'rkan']
REPRESENTATIVES = {
    osp.join(REPO, 'configs', 'rkan', f'{name}.py')
    for name in (
        # Tiny ImageNet; ResNet (basic blocks), ResNeXt, DenseNet, RegNet, and RKAN on each
        'resnet-34_8xb16_tiny-imagenet-160px',
        'rkanet-34-r1_8xb16_tiny-imagenet-160px',
        'resnext-50-32x4d_8xb16_tiny-imagenet-160px',
        'rkanext-50-32x4d_8xb16_tiny-imagenet-160px',
        'densenet-121_8xb16_tiny-imagenet-160px',
        'rkan-densenet-121_8xb16_tiny-imagenet-160px',
        'regnetx-3.2gf_8xb16_tiny-imagenet-160px',
        'rkan-regnetx-3.2gf-r1_8xb16_tiny-imagenet-160px',
        # CIFAR-100; the comparison backbones
        'resnet-101-d_8xb16_cifar100-128px',
        'res2net-101_8xb16_cifar100-128px',
        'gcnet-101_8xb16_cifar100-128px',
        'resnest-101_8xb16_cifar100-128px',
        # Food-101; ResNet (bottlenecks) and RKANet
        'resnet-50_8xb16_food101-224px',
        'rkanet-50_8xb16_food101-224px',
        # CIFAR-100 only: PyramidNet
        'pyramidnet-101_8xb16_cifar100-128px',
        # ImageNet; RKANet-E (two branches), the RBF basis
        'rkanet-50-e_8xb32_in1k',
        'rkanet-50-rbf_8xb32_in1k',
        # ImageNet; the attention ResNets (plug-ins of mmdet's ResNet) and RegNetY, plain and RKAN:
        # their smallest configs (ECA, SA and ELA also have 101-layer CIFAR-100 rows; RegNetY
        # also 8GF and 32GF Tiny ImageNet and CIFAR-100 rows)
        'senet-50_8xb32_in1k',
        'rkan-senet-50_8xb32_in1k',
        'ecanet-50_8xb32_in1k',
        'rkan-ecanet-50_8xb32_in1k',
        'sanet-50_8xb32_in1k',
        'rkan-sanet-50_8xb32_in1k',
        'ela-l-50_8xb32_in1k',
        'rkan-ela-l-50_8xb32_in1k',
        'simam-50_8xb32_in1k',
        'rkan-simam-50_8xb32_in1k',
        'cbam-50_8xb32_in1k',
        'rkan-cbam-50_8xb32_in1k',
        'regnety-3.2gf_8xb32_in1k',
        'rkan-regnety-3.2gf_8xb32_in1k',
        # COCO: ResNet-50 and RKANet-50 Mask R-CNN, and the attention backbones of the COCO table
        'mask-rcnn_resnet-50_fpn_1x_coco',
        'mask-rcnn_rkanet-50_fpn_1x_coco',
        'mask-rcnn_senet-50_fpn_1x_coco',
        'mask-rcnn_rkan-senet-50_fpn_1x_coco',
        'mask-rcnn_ecanet-50_fpn_1x_coco',
        'mask-rcnn_sanet-50_fpn_1x_coco',
        # ADE20K
        'upernet_rkanet-50_4xb4-160k_ade20k-512x512',
    )
}
KAT_NOT_TRAINED = {osp.join(REPO, 'configs', 'kat', f'{name}.py')
                   for name in ('vit-kan-small_8xb128_in1k', 'vit-kan-base_8xb128_in1k')}
with open(osp.join(REPO, 'tests', 'data', 'paper_rows.yml')) as f:
    PAPER_ROW_CONFIGS = {osp.join(REPO, 'configs', 'kat' if row['table'] == 'KAT ImageNet' else 'rkan',
                                  f'{row["config"]}.py')
                         for row in yaml.safe_load(f) if row.get('config')}
TRAINED = [p for p in CONFIGS if (p not in ZOO or p in REPRESENTATIVES) and p not in KAT_NOT_TRAINED]
NOT_TRAINED = [p for p in ZOO if p not in REPRESENTATIVES]
# tests/test_paper_rows.py builds the paper rows' models on the meta device (and runs them there).
SHAPE_CHECKED = [p for p in NOT_TRAINED if p not in PAPER_ROW_CONFIGS]


def config_id(path: str) -> str:
    return osp.relpath(path, osp.join(REPO, 'configs'))


def config_name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


@functools.lru_cache(maxsize=None)
def load(path: str) -> Config:
    with cached_package_configs():
        return Config.fromfile(path)


@pytest.fixture(scope='module')
def classification_roots(tmp_path_factory, shapes_imagenet) -> dict:
    """Generated CIFAR-100, Food-101 and Tiny ImageNet (converted by the repository's tool)."""
    tiny = make_tiny_imagenet_style(str(tmp_path_factory.mktemp('tiny-imagenet-200')), num_train_per_class=1,
                                    num_val_per_class=1, num_test=1)
    runpy.run_path(osp.join(REPO, 'tools', 'dataset_converters', 'tiny_imagenet.py'))['convert'](tiny)
    return dict(imagenet=shapes_imagenet, tiny_imagenet=tiny,
                cifar100=make_cifar100_style(str(tmp_path_factory.mktemp('cifar100')), 1, 1),
                food101=make_food101_style(str(tmp_path_factory.mktemp('food-101')), 1, 1))


def test_configs_exist():
    assert CONFIGS, 'no configs found under configs/'
    assert REPRESENTATIVES <= set(ZOO), sorted(map(config_id, REPRESENTATIVES - set(ZOO)))


def test_untrained_kat_configs_are_paper_rows_of_a_trained_kind():
    assert KAT_NOT_TRAINED <= PAPER_ROW_CONFIGS, 'tests/test_paper_rows.py must build them'

    def kind(path: str) -> str:  # the drop path rate is a rate, the same code path
        cfg = copy.deepcopy(load(path))
        cfg.model.backbone.pop('drop_path_rate', None)
        return backbone_kind(cfg)

    trained_kinds = {kind(path) for path in TRAINED if osp.dirname(path) == osp.join(REPO, 'configs', 'kat')}
    untrained = [config_id(path) for path in KAT_NOT_TRAINED if kind(path) not in trained_kinds]
    assert not untrained, f'no trained config runs the code of {untrained}'


@pytest.mark.parametrize('config_path', TRAINED, ids=map(config_id, TRAINED))
def test_config_trains_one_iteration(config_path, shapes_coco, shapes_ade20k, classification_roots, tmp_path):
    cfg = load(config_path)
    assert cfg.get('custom_imports', {}).get('imports') == ['mmrkan'], 'configs must import mmrkan'
    assert cfg.default_scope in ('mmdet', 'mmseg', 'mmpretrain')
    roots = dict(classification_roots, coco=shapes_coco, ade20k=shapes_ade20k)
    with accept_generated_cifar100(roots['cifar100']):
        runner = Runner.from_cfg(tiny_training_config(cfg, roots, str(tmp_path)))
        runner.train()
    assert runner.iter == 1
    losses = runner.message_hub.log_scalars
    loss_keys = [k for k in losses if k.startswith('train/') and 'loss' in k]
    assert loss_keys, f'no training loss was logged: {sorted(losses)}'
    for key in loss_keys:
        value = losses[key].current()
        assert value == value and abs(value) < 1e6, f'{key} = {value}'


@pytest.mark.parametrize('config_path', SHAPE_CHECKED, ids=map(config_id, SHAPE_CHECKED))
def test_config_builds_and_runs_on_the_meta_device(config_path):
    cfg = load(config_path)
    assert cfg.get('custom_imports', {}).get('imports') == ['mmrkan'], 'configs must import mmrkan'
    model = build_model_on_meta(cfg).eval()
    inputs = torch.empty(2, 3, 224, 224, device='meta')
    with torch.no_grad():
        if cfg.default_scope == 'mmpretrain':
            scores = model(inputs, mode='tensor')
            assert tuple(scores.shape) == (2, cfg.model.head.num_classes)
        else:  # the detector's backbone and neck (its heads need data samples)
            features = model.extract_feat(inputs)
            assert len(features) == cfg.model.neck.num_outs


@functools.lru_cache(maxsize=None)
def zoo_parameters() -> dict:
    """Config name -> parameter count, as configs/rkan/metafile.yml states it (tests/test_paper_rows.py
    checks the statement against the built model for every paper row)."""
    with open(osp.join(REPO, 'configs', 'rkan', 'metafile.yml')) as f:
        return {entry['Name']: entry['Metadata']['Parameters'] for entry in yaml.safe_load(f)['Models']}


def test_representatives_cover_every_recipe_and_model_kind():
    trained_recipes = {recipe_key(load(path)) for path in REPRESENTATIVES}
    trained_kinds = {backbone_kind(load(path)) for path in REPRESENTATIVES}
    untrained = [(config_id(path), what) for path in NOT_TRAINED
                 for what, key, trained in (('recipe', recipe_key, trained_recipes),
                                            ('kind of model', backbone_kind, trained_kinds))
                 if key(load(path)) not in trained]
    assert not untrained, ('no representative trains the recipe or kind of model of these configs; add one '
                           f'of each to REPRESENTATIVES: {untrained}')


def test_each_kind_of_model_trains_through_its_smallest_config():
    """The one-iteration training of a kind of model costs what its smallest config costs: e.g.
    RegNetY trains as the 19M-parameter RegNetY-3.2GF, never as the 142M-parameter 32GF."""
    parameters = zoo_parameters()
    configs_of_kind = {}
    for path in ZOO:
        configs_of_kind.setdefault(backbone_kind(load(path)), []).append(path)
    too_large = []
    for paths in configs_of_kind.values():
        trained = [path for path in paths if path in REPRESENTATIVES]
        smallest = min(paths, key=lambda path: parameters[config_name(path)])
        if trained and min(parameters[config_name(path)] for path in trained) > parameters[config_name(smallest)]:
            too_large.append((sorted(map(config_id, trained)), config_id(smallest)))
    assert not too_large, f'train the smallest config of each kind instead (trained, smallest): {too_large}'
