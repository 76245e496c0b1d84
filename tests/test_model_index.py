"""model-index.yml and the metafiles: one entry per config, named after it, honest about results;
the classifiers found by name through mmpretrain's ModelHub; ``mim search`` lists them."""
import glob
import os.path as osp
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


@pytest.mark.skipif(shutil.which('mim', path=osp.dirname(sys.executable)) is None,
                    reason='openmim is not installed')
def test_mim_search_lists_our_models(entries):
    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    result = subprocess.run([mim, 'search', 'mmrkan'], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in entries:
        assert name in result.stdout, f'{name} missing from `mim search mmrkan`'
