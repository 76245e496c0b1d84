"""docs/finetune.md ("Fine-tune on your own data") works as written: its three configs are
written where it says and its quick-check commands run verbatim from a checkout-like directory,
on generated data in the layouts it shows, starting from 3-class checkpoints of the demo models
where the demo leaves them. Each fine-tuning prints one warning line for the heads' keys."""
import os
import os.path as osp
import re
import shlex

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from PIL import Image

from mmrkan.testing import make_ade20k_style, make_coco_style, make_imagenet_style
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOC = osp.join(REPO, 'docs', 'finetune.md')


def sections() -> dict:
    """Heading -> (config path, config text, commands) of the doc's task sections."""
    with open(DOC) as f:
        text = f.read()
    found = {}
    for heading, body in re.findall(r'^## (.+?)\n(.*?)(?=^## |\Z)', text, re.S | re.M):
        configs = re.findall(r'```python\n# (\S+)\n(.*?)```', body, re.S)
        commands = [line for block in re.findall(r'```bash\n(.*?)```', body, re.S)
                    for line in block.splitlines() if line.startswith('python ')]
        if configs:
            (path, config), = configs
            found[heading.split(' (')[0]] = (path, f'# {path}\n{config}', commands)
    return found


SECTIONS = sections()


def own_data(task: str, root: str) -> None:
    """Generated data in the layout the section shows, with the classes its config names."""
    if task == 'Detection':
        make_coco_style(osp.join(root, 'my_shapes_coco'), num_train=4, num_val=2, image_size=(64, 64))
    elif task == 'Segmentation':  # background, square, circle: the triangles become background
        ade = make_ade20k_style(osp.join(root, 'my_shapes_ade'), num_train=2, num_val=2, image_size=(64, 64))
        for folder in ('training', 'validation'):
            for name in os.listdir(osp.join(ade, 'annotations', folder)):
                path = osp.join(ade, 'annotations', folder, name)
                labels = np.array(Image.open(path))
                Image.fromarray(np.where(labels == 3, 0, labels).astype(np.uint8)).save(path)
    else:  # class folders only (no meta/*.txt list), without the triangles
        folders = make_imagenet_style(osp.join(root, 'my_shapes_folders'), num_train_per_class=1,
                                      num_val_per_class=1)
        for split in ('train', 'val'):
            for name in os.listdir(osp.join(folders, split, 'triangle')):
                os.remove(osp.join(folders, split, 'triangle', name))
            os.rmdir(osp.join(folders, split, 'triangle'))
        for name in ('train.txt', 'val.txt'):
            os.remove(osp.join(folders, 'meta', name))


def demo_checkpoint(config: str, path: str) -> None:
    """A checkpoint of the 3-class demo model where ``load_from`` expects it (random weights:
    the fit of the keys is what matters here, not what they learned)."""
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': MODELS.build(model_cfg).state_dict(), 'meta': {}}, path)


def test_the_doc_has_the_three_tasks():
    assert sorted(SECTIONS) == ['Classification', 'Detection', 'Segmentation']
    for path, _, commands in SECTIONS.values():
        assert [c.split()[1] for c in commands] == ['tools/train.py', 'tools/test.py', 'tools/train.py']
        assert all(path in command for command in commands)


@pytest.mark.parametrize('task', sorted(SECTIONS))
def test_the_quick_check_runs_as_written(task, capsys, tmp_path, monkeypatch):
    path, config, commands = SECTIONS[task]
    checkout = tmp_path / 'checkout'  # the configs folder, tools/, data/ and work_dirs/ of a checkout
    (checkout / 'configs').mkdir(parents=True)
    for name in ('demo', '_base_'):
        os.symlink(osp.join(REPO, 'configs', name), checkout / 'configs' / name)
    os.symlink(osp.join(REPO, 'tools'), checkout / 'tools')
    (checkout / osp.dirname(path)).mkdir(parents=True)
    (checkout / path).write_text(config)
    own_data(task, str(checkout / 'data'))
    load_from = Config.fromfile(str(checkout / path)).load_from
    base = re.search(r"^_base_ = '([^']+)'", config, re.M).group(1)
    demo_checkpoint(osp.normpath(osp.join(REPO, osp.dirname(path), base)), str(checkout / load_from))
    monkeypatch.chdir(checkout)

    train, test = commands[:2]  # the quick check; the third command is the full run
    status, out, err = run_script(capsys, *shlex.split(train)[1:])
    assert status == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if line.startswith('warning: ')]
    assert len(warnings) == 1 and re.match(rf'warning: load_from {load_from}: \d keys of the task heads are for '
                                           r'\d classes there, \d in the config, and keep their initialisation',
                                           warnings[0]), err[-3000:]
    assert 'size mismatch' not in out + err
    status, out, err = run_script(capsys, *shlex.split(test)[1:])
    assert status == 0, err[-3000:]
    assert re.search(r'coco/bbox_mAP|mIoU|accuracy/top1', out), out[-3000:]
