"""model-index.yml and the metafiles: one entry per config, named after it, honest about results;
the classifiers found by name through mmpretrain's ModelHub; ``mim search`` lists them."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from mmengine.config import Config

import mmrkan  # noqa: F401  (registers the classifiers in mmpretrain's ModelHub)
from mmrkan.analysis import build_task_model
from mmrkan.apis.model_index import model_index_root

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_FOLDERS = ('demo', 'rkan', 'kat', 'katdet')
# Built in the test (cheap on the CPU) to check the parameter counts the metafiles state.
COUNTED = ('kat-micro_shapes-imagenet-64px', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco',
           'upernet_kat-micro_shapes-ade20k-128x128', 'kat-tiny_8xb128_in1k', 'rkanet-50_8xb32_in1k')


def load_yaml(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def entries() -> dict:
    """Model name -> (metafile folder, entry), read from the files model-index.yml imports."""
    index = load_yaml(osp.join(REPO, 'model-index.yml'))
    found = {}
    for metafile in index['Import']:
        for entry in load_yaml(osp.join(REPO, metafile))['Models']:
            assert entry['Name'] not in found, f'{entry["Name"]} is listed twice'
            found[entry['Name']] = (osp.dirname(metafile), entry)
    return found


def test_model_index_imports_one_metafile_per_config_folder():
    index = load_yaml(osp.join(REPO, 'model-index.yml'))
    assert sorted(index['Import']) == sorted(f'configs/{folder}/metafile.yml' for folder in CONFIG_FOLDERS)
    folders = {osp.basename(osp.dirname(path)) for path in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))}
    assert folders - {'_base_'} == set(CONFIG_FOLDERS), 'a config folder without a metafile'


def test_every_config_has_an_entry_and_every_entry_a_config(entries):
    configs = {osp.relpath(path, REPO) for folder in CONFIG_FOLDERS
               for path in glob.glob(osp.join(REPO, 'configs', folder, '*.py'))}
    listed = {entry['Config'] for _, entry in entries.values()}
    assert configs - listed == set(), 'configs without a metafile entry'
    assert listed - configs == set(), 'metafile entries whose config does not exist'
    for name, (folder, entry) in entries.items():
        assert entry['Config'] == f'{folder}/{name}.py', f'{name}: the name must be the config file name'


def test_entries_have_metadata_and_no_weights(entries):
    for name, (_, entry) in entries.items():
        assert 'Weights' not in entry, f'{name}: no weights are published'
        metadata = entry['Metadata']
        assert isinstance(metadata['Parameters'], int), name
        assert isinstance(metadata.get('FLOPs', 0), int), name
        height, width = (int(side) for side in metadata['Input Size'].split('x'))
        assert height > 0 and width > 0
        assert entry['Results'], f'{name}: the task is stated by its Results'


def test_reported_results_are_marked_as_the_papers(entries):
    """Nothing has been trained on real data with mmrkan: every metric value is the paper's."""
    for name, (_, entry) in entries.items():
        for result in entry['Results']:
            for metric in result['Metrics']:
                assert metric.endswith('(paper)'), f'{name}: {metric}'
                assert entry.get('In Collection'), f'{name}: a paper result needs its collection (paper)'


@pytest.mark.parametrize('name', COUNTED)
def test_parameters_are_those_of_the_built_model(entries, name):
    _, entry = entries[name]
    cfg = Config.fromfile(osp.join(REPO, entry['Config']))
    model = build_task_model(cfg)
    if cfg.default_scope == 'mmseg':
        model.auxiliary_head = None  # get_flops leaves out the training-only auxiliary head
    assert sum(p.numel() for p in model.parameters()) == entry['Metadata']['Parameters']


def test_mmpretrain_finds_our_classifiers_by_name(entries):
    from mmpretrain import list_models

    classifiers = {name for name, (_, entry) in entries.items()
                   if any(result['Task'] == 'Image Classification' for result in entry['Results'])}
    assert {'kat-small_8xb128_in1k', 'rkanet-50_8xb32_in1k'} <= classifiers
    assert set(list_models(task='Image Classification')) >= classifiers
    # Detectors and segmentors are not given to mmpretrain, which could only fail to build them.
    assert 'upernet_kat-small_8xb2-160k_ade20k-512x512' not in list_models()
    assert model_index_root() is not None


def test_get_model_and_inference_model_run_a_kat_by_name():
    import matplotlib.cbook
    from mmpretrain import get_model, inference_model

    model = get_model('kat-small_8xb128_in1k', pretrained=False)
    assert type(model.backbone).__name__ == 'KAT'
    assert sum(p.numel() for p in model.parameters()) == 22_051_576
    image = matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
    result = inference_model(model, str(image))
    assert 0 <= result['pred_label'] < 1000 and 0 < result['pred_score'] <= 1


MIM = shutil.which('mim', path=osp.dirname(sys.executable))
needs_mim = pytest.mark.skipif(MIM is None, reason='openmim is not installed (tools/setup_env.sh installs it)')


@pytest.fixture(scope='module')
def regular_install(tmp_path_factory) -> dict:
    """The environment of a regular (non-editable) install of this checkout, for mim.

    mim finds a package at ``<distribution location>/mmrkan``: an editable install's location
    is site-packages, which holds no mmrkan. So the package is laid out here as a wheel lays it
    out: a copy of ``mmrkan/`` (its built extension included, and ``.mim`` with real copies of
    configs, tools and model-index.yml where the checkout has symlinks) beside a dist-info, first
    on PYTHONPATH. Copying instead of ``pip install .`` saves compiling the extension again.
    """
    from importlib import metadata

    site = tmp_path_factory.mktemp('site')
    package = osp.dirname(osp.abspath(mmrkan.__file__))
    assert osp.isdir(osp.join(package, '.mim')), 'mmrkan/.mim is made by setup.py: reinstall mmrkan'
    shutil.copytree(package, site / 'mmrkan', ignore=shutil.ignore_patterns('__pycache__'))
    version = metadata.version('mmrkan')
    dist_info = site / f'mmrkan-{version}.dist-info'
    dist_info.mkdir()
    (dist_info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: mmrkan\nVersion: {version}\n')
    (dist_info / 'top_level.txt').write_text('mmrkan\n')
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get('PYTHONPATH')])))


def run_mim(env: dict, *args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([MIM, *args], capture_output=True, text=True, timeout=900, env=env, cwd=cwd)


@needs_mim
def test_mim_search_lists_our_models(entries, regular_install, tmp_path):
    result = run_mim(regular_install, 'search', 'mmrkan', cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in entries:
        assert name in result.stdout, f'{name} missing from `mim search mmrkan`'


@needs_mim
def test_mim_trains_and_tests_a_demo_config_found_by_name(regular_install, shapes_imagenet, tmp_path):
    """``mim train mmrkan <config file name>`` finds the config and tools/train.py in the installed
    package (the working directory has neither) and trains; ``mim test`` evaluates the checkpoint."""
    work_dir = tmp_path / 'work'
    config = 'kat-micro_shapes-imagenet-64px.py'
    short = ['--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
             'default_hooks.logger.interval=1']
    trained = run_mim(regular_install, 'train', 'mmrkan', config, '--gpus', '0', '--work-dir', str(work_dir),
                      '--data-root', shapes_imagenet, *short, cwd=str(tmp_path))
    assert trained.returncode == 0, (trained.stdout[-2000:], trained.stderr[-3000:])
    site = regular_install['PYTHONPATH'].split(os.pathsep)[0]
    installed_config = osp.join(site, 'mmrkan', '.mim', 'configs', 'demo', config)
    assert f'Training command is {sys.executable} ' in trained.stdout
    assert installed_config in trained.stdout, trained.stdout[-2000:]
    checkpoint = work_dir / 'epoch_2.pth'
    assert checkpoint.is_file(), sorted(p.name for p in work_dir.iterdir())
    tested = run_mim(regular_install, 'test', 'mmrkan', config, '--checkpoint', str(checkpoint), '--gpus', '0',
                     '--work-dir', str(tmp_path / 'test'), '--data-root', shapes_imagenet, cwd=str(tmp_path))
    assert tested.returncode == 0, (tested.stdout[-2000:], tested.stderr[-3000:])
    assert re.search(r'accuracy/top1: \d', tested.stdout + tested.stderr), tested.stdout[-2000:]

