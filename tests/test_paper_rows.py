"""The RKAN and KAT papers' tables (tests/data/paper_rows.yml) against the configs that build them.

Every row that names a config: its full model is built on the meta device (parameters without
storage, nothing initialised: ~0.1-2 s instead of seconds and gigabytes), runs a forward pass
there (shapes), and its parameter count, less the ``extra_params`` that an OpenMMLab building
block adds to the authors' model or that the authors' counting tool leaves out, rounds to the
printed count; where the row names the module types holding those parameters
(``extra_modules``), they hold exactly that many. The RKAN settings the paper gives for the row
are the config's (for KAT rows, the backbone settings it states); the config folder's metafile.yml
states the same count and the paper's result. The
rows of one table train with one recipe, the paper's for the classification tables, and each
COCO backbone has the layout of the ImageNet classifier its config loads. Rows without a config say why (``pending``), and the README lists
them, as it lists the rows built with extra parameters. One-iteration training of these configs:
tests/test_configs.py.
"""
import functools
import inspect
import json
import os.path as osp
import re
from typing import Any, Dict, List, Optional

import pytest
import torch
import yaml
from torch import nn
from mmengine.config import Config

from mmrkan.models.backbones.rkan import RKAN
from mmrkan.registry import task_registry
from mmrkan.testing.zoo import build_model_on_meta, cached_package_configs, recipe_key

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Meta-device forwards run the KAN ops' PyTorch references (shapes only), which mmrkan announces.
pytestmark = pytest.mark.filterwarnings('ignore:mmrkan._ext has no meta kernels')
with open(osp.join(REPO, 'tests', 'data', 'paper_rows.yml')) as f:
    ROWS: List[dict] = yaml.safe_load(f)
TABLES = ('CIFAR-100', 'Tiny ImageNet', 'ImageNet', 'COCO', 'KAT ImageNet')
# The config folder of each paper's rows, and the decimals of its counts (millions).
KAT_TABLES = ('KAT ImageNet', )
RKAN_SETTINGS = ('basis', 'reduce_factor', 'expansion', 'stages')
KEYS = {'table', 'model', 'params_m', 'config', 'pending', 'extra_params', 'extra_reason', 'extra_modules',
        'paper_top1', 'paper_box_ap', 'paper_mask_ap', 'backbone', *RKAN_SETTINGS}
# The paper's classification recipe: SGD with Nesterov momentum 0.9, lr 0.05 for its batch of 128
# raised linearly from 0.005 over 10 epochs then cosine, torchvision's RandAugment(2, 9), MixUp
# (alpha 0.2, p 0.3) and CutMix (p 0.5); per table, the epochs and the weight decay.
PAPER_RECIPES = {'CIFAR-100': (200, 5e-4), 'Tiny ImageNet': (200, 5e-4), 'ImageNet': (100, 1e-4)}
BUILT = [row for row in ROWS if row.get('config')]
COCO = [row for row in BUILT if row['table'] == 'COCO']
KAT_ROWS = [row for row in BUILT if row['table'] in KAT_TABLES]


def row_id(row: dict) -> str:
    basis = f' ({row["basis"]})' if row.get('basis') == 'rbf' else ''
    return f'{row["table"]}: {row["model"]}{basis}'


def config_folder(table: str) -> str:
    return 'kat' if table in KAT_TABLES else 'rkan'


def count_decimals(table: str) -> int:
    return 1 if table in KAT_TABLES else 2


def config_path(name: str, table: str = 'ImageNet') -> str:
    return osp.join(REPO, 'configs', config_folder(table), f'{name}.py')


@functools.lru_cache(maxsize=None)
def load(name: str, table: str = 'ImageNet') -> Config:
    with cached_package_configs():
        return Config.fromfile(config_path(name, table))


@functools.lru_cache(maxsize=None)
def metafile_entries(folder: str) -> Dict[str, dict]:
    with open(osp.join(REPO, 'configs', folder, 'metafile.yml')) as f:
        return {entry['Name']: entry for entry in yaml.safe_load(f)['Models']}


def rkan_settings(cfg: Config) -> Optional[dict]:
    """The RKAN wrapper's settings in the config, defaults filled in; None without RKAN."""
    backbone = cfg.model.backbone
    if backbone.type != 'RKAN':
        return None
    defaults = {name: p.default for name, p in inspect.signature(RKAN).parameters.items()}
    settings = {name: backbone.get(name, defaults[name]) for name in RKAN_SETTINGS}
    settings['stages'] = list(settings['stages'])
    return settings


def test_rows_are_well_formed():
    seen = set()
    for row in ROWS:
        name = row_id(row)
        assert set(row) <= KEYS, f'{name}: unknown keys {set(row) - KEYS}'
        assert row['table'] in TABLES, name
        assert name not in seen, f'{name} is listed twice'
        seen.add(name)
        if row['table'] == 'COCO':
            assert row['params_m'] is None, f'{name}: the COCO table prints no counts'
        elif row['table'] not in KAT_TABLES or row['params_m'] is not None:
            # The KAT paper prints no counts for its ablation rows.
            assert isinstance(row['params_m'], float) and row['params_m'] > 0, name
        assert ('backbone' in row) <= (row['table'] in KAT_TABLES), f'{name}: backbone settings are for KAT rows'
        if row['table'] in KAT_TABLES and row.get('config'):
            assert 'backbone' in row, f'{name}: a KAT row states the backbone settings the paper gives it'
        if row.get('config'):
            folder = config_folder(row['table'])
            assert osp.isfile(config_path(row['config'], row['table'])), \
                f'{name}: no configs/{folder}/{row["config"]}.py'
            assert 'pending' not in row, f'{name}: a row with a config is not pending'
        else:
            assert row.get('pending'), f'{name} has no config: say why in `pending`'
        assert ('extra_params' in row) == ('extra_reason' in row), f'{name}: extra_params needs extra_reason'
        if 'extra_modules' in row:
            assert 'extra_params' in row, f'{name}: extra_modules names the modules of extra_params'
            unknown = [module for module in row['extra_modules'] if not isinstance(getattr(nn, module, None), type)]
            assert not unknown, f'{name}: extra_modules {unknown} are not torch.nn module types'
        if row['model'].startswith('RKAN') and row.get('config'):
            assert 'stages' in row and {'reduce_factor', 'expansion'} & set(row), \
                f'{name}: an RKAN row states its stages and its reduce factor or expansion'


@pytest.mark.parametrize('row', BUILT, ids=map(row_id, BUILT))
def test_row_builds_with_the_papers_count(row):
    cfg = load(row['config'], row['table'])
    model = build_model_on_meta(cfg).eval()
    count = sum(p.numel() for p in model.parameters())
    inputs = torch.empty(1, 3, 224, 224, device='meta')
    with torch.no_grad():
        if cfg.default_scope == 'mmpretrain':
            assert tuple(model(inputs, mode='tensor').shape) == (1, cfg.model.head.num_classes)
        else:
            assert len(model.extract_feat(inputs)) == cfg.model.neck.num_outs
    if cfg.default_scope == 'mmpretrain':
        # MixUp and CutMix mix one-hot labels of the data preprocessor's width.
        assert cfg.data_preprocessor.num_classes == cfg.model.head.num_classes, \
            f'{row["config"]}: data_preprocessor.num_classes differs from the head\'s'
    if 'extra_modules' in row:
        module_types = tuple(getattr(nn, name) for name in row['extra_modules'])
        held = sum(p.numel() for module in model.modules() if isinstance(module, module_types)
                   for p in module.parameters(recurse=False))
        assert held == row['extra_params'], \
            f'{row_id(row)}: its {row["extra_modules"]} modules hold {held:,} parameters, not extra_params'
    if row['params_m'] is not None:
        paper_count = count - row.get('extra_params', 0)
        assert round(paper_count / 1e6, count_decimals(row['table'])) == row['params_m'], \
            f'{row_id(row)}: {paper_count:,} parameters (less extra_params), the paper prints {row["params_m"]}M'
    entry = metafile_entries(config_folder(row['table']))[row['config']]
    assert entry['Metadata']['Parameters'] == count, f'{row["config"]}: metafile.yml states another count'
    results = {f'{metric} (paper)': row[key] for key, metric in (
        ('paper_top1', 'Top 1 Accuracy'), ('paper_box_ap', 'box AP'), ('paper_mask_ap', 'mask AP')) if key in row}
    stated = {metric: value for result in entry['Results'] for metric, value in result['Metrics'].items()}
    assert stated == results, f'{row["config"]}: metafile.yml results differ from the paper rows'


@pytest.mark.parametrize('row', BUILT, ids=map(row_id, BUILT))
def test_row_has_the_papers_rkan_settings(row):
    settings = rkan_settings(load(row['config'], row['table']))
    if not row['model'].startswith('RKAN'):
        assert settings is None, f'{row_id(row)} is a baseline, but its config wraps the backbone in RKAN'
        return
    assert settings is not None, f'{row_id(row)}: the config has no RKAN backbone'
    for name in RKAN_SETTINGS:
        if name in row:
            assert settings[name] == row[name], f'{row_id(row)}: {name}={settings[name]!r}, the paper: {row[name]!r}'


def plain(value: Any) -> Any:
    """Config values as YAML writes them (tuples as lists)."""
    return json.loads(json.dumps(value.to_dict() if hasattr(value, 'to_dict') else value))


@pytest.mark.parametrize('row', KAT_ROWS, ids=map(row_id, KAT_ROWS))
def test_kat_row_has_the_papers_backbone_settings(row):
    backbone = load(row['config'], row['table']).model.backbone
    defaults = {name: p.default for name, p in inspect.signature(
        task_registry('mmpretrain').get(backbone.type)).parameters.items()}
    for name, value in row['backbone'].items():
        stated = backbone.type if name == 'type' else backbone.get(name, defaults.get(name))
        assert plain(stated) == value, f'{row_id(row)}: {name}={stated!r}, the paper: {value!r}'


@pytest.mark.parametrize('table', TABLES)
def test_the_rows_of_a_table_train_with_one_recipe(table):
    recipes = {}
    for row in BUILT:
        if row['table'] == table:
            recipes.setdefault(recipe_key(load(row['config'], table)), []).append(row['config'])
    assert len(recipes) == 1, f'{table}: the configs differ in their recipe: {list(recipes.values())}'


@pytest.mark.parametrize('table', PAPER_RECIPES)
def test_the_classification_tables_train_with_the_papers_recipe(table):
    epochs, weight_decay = PAPER_RECIPES[table]
    # One config stands for its table: the rows of a table share one recipe (tested above).
    cfg = load(next(row['config'] for row in BUILT if row['table'] == table))
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.momentum, optimizer.nesterov, optimizer.weight_decay) == \
        ('SGD', 0.9, True, weight_decay)
    # The configs' batch is 8 GPUs x batch_size; the lr scales linearly with it.
    assert cfg.auto_scale_lr.base_batch_size == 8 * cfg.train_dataloader.batch_size
    assert optimizer.lr * 128 / cfg.auto_scale_lr.base_batch_size == pytest.approx(0.05)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.begin, warmup.end) == ('LinearLR', 0.1, 0, 10)
    assert (cosine.type, cosine.begin, cosine.end, cfg.train_cfg.max_epochs) == ('CosineAnnealingLR', 10, epochs, epochs)
    rand_augment = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'datasets', 'torchvision-randaugment-m9.py')).rand_augment
    assert rand_augment in cfg.train_dataloader.dataset.pipeline, f'{table}: not torchvision\'s RandAugment(2, 9)'
    batch_augments = cfg.data_preprocessor.get('batch_augments') or cfg.model.train_cfg
    assert batch_augments.augments == [dict(type='Mixup', alpha=0.2), dict(type='CutMix', alpha=1.0)]
    assert batch_augments.probs == [0.3, 0.5]


@pytest.mark.parametrize('row', COCO, ids=map(row_id, COCO))
def test_coco_backbone_has_the_layout_of_its_imagenet_classifier(row):
    cfg = load(row['config'])
    checkpoint = cfg.model.backbone.init_cfg.checkpoint
    match = re.fullmatch(r'work_dirs/(.+)/epoch_\d+\.pth', checkpoint)
    assert match and osp.isfile(config_path(match.group(1))), \
        f'{row["config"]}: {checkpoint} is not the checkpoint of a configs/rkan classifier'
    classifier = build_model_on_meta(load(match.group(1)))
    detector = build_model_on_meta(cfg)
    expected = {key[len('backbone.'):]: value.shape for key, value in classifier.state_dict().items()
                if key.startswith('backbone.')}
    assert {key: value.shape for key, value in detector.backbone.state_dict().items()} == expected


def readme_rows_not_built_exactly() -> Dict[str, str]:
    """``table: model`` -> line, from the table under the README's heading on such rows."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    match = re.search(r'^#+ Paper rows not built exactly\n(.*?)(?=^#)', text, re.S | re.M)
    assert match, 'README.md has no "Paper rows not built exactly" section'
    listed = {}
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if line.startswith('|') and len(cells) >= 3 and cells[0] in TABLES:
            listed[f'{cells[0]}: {cells[1]}'] = line
    return listed


def test_readme_lists_every_row_not_built_exactly():
    listed = readme_rows_not_built_exactly()
    expected = {f'{row["table"]}: {row["model"]}' for row in ROWS if row.get('pending') or 'extra_params' in row}
    assert set(listed) == expected, (f'missing from the README: {sorted(expected - set(listed))}; '
                                     f'listed but built exactly: {sorted(set(listed) - expected)}')


def test_docs_list_every_config_of_the_zoo():
    with open(osp.join(REPO, 'docs', 'models.md')) as f:
        models_doc = f.read()
    missing = sorted({row['config'] for row in BUILT} - set(re.findall(r'`([\w.-]+)\.py`', models_doc)))
    assert not missing, f'docs/models.md does not list {missing}'
