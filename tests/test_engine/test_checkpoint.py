import os
import os.path as osp
import re

import pytest
import torch
from mmengine.model import BaseModel, BaseModule
from mmengine.runner import CheckpointLoader, Runner, load_checkpoint
from torch.utils.data import Dataset

from mmrkan.engine import checkpoint as checkpoint_module
from mmrkan.engine.checkpoint import CheckpointError, safe_torch_load


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs)  # default_collate has stacked the batch
        if mode == 'loss':
            return dict(loss=((out.squeeze(-1) - targets) ** 2).mean())
        return out


class ToyDataset(Dataset):
    metainfo = dict(classes=('a', ))

    def __len__(self):
        return 8

    def __getitem__(self, index):
        x = torch.tensor([index / 8.0, 1.0])
        return dict(inputs=x, targets=x.sum())


def make_runner(work_dir, max_epochs, **kwargs) -> Runner:
    return Runner(
        model=ToyModel(), work_dir=work_dir,
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=True),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        log_level='WARNING', randomness=dict(seed=0), **kwargs)


@pytest.fixture(scope='module')
def uninterrupted_run(tmp_path_factory) -> str:
    work_dir = str(tmp_path_factory.mktemp('toy_run'))
    make_runner(work_dir, max_epochs=2).train()
    return work_dir


@pytest.fixture(scope='module')
def runner_checkpoint(uninterrupted_run) -> str:
    return osp.join(uninterrupted_run, 'epoch_1.pth')


@pytest.fixture(params=['torch_allow_lists', 'restricted_unpickler'])
def loading_path(request, monkeypatch) -> str:
    """Both ways of loading safely: torch's weights_only allow-lists (torch >= 2.6) and the
    restricted unpickler (torch < 2.6, also run here on a newer torch)."""
    if request.param == 'torch_allow_lists':
        if not checkpoint_module._TORCH_ALLOW_LISTS:
            pytest.skip(f'torch {torch.__version__} < 2.6 has no (callable, name) allow-lists')
    else:
        monkeypatch.setattr(checkpoint_module, '_TORCH_ALLOW_LISTS', False)
    return request.param


def test_runner_checkpoint_loads_safely(runner_checkpoint, loading_path):
    checkpoint = safe_torch_load(runner_checkpoint)
    assert set(checkpoint) >= {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'}
    assert checkpoint['meta']['epoch'] == 1


def test_mmengine_loader_is_the_safe_one(runner_checkpoint):
    assert CheckpointLoader._get_checkpoint_loader(runner_checkpoint).__module__ == 'mmrkan.engine.checkpoint'
    assert 'state_dict' in CheckpointLoader.load_checkpoint(runner_checkpoint)


def test_resume_continues_from_the_saved_epoch(uninterrupted_run, runner_checkpoint, tmp_path):
    runner = make_runner(str(tmp_path), max_epochs=2, resume=True, load_from=runner_checkpoint)
    runner.train()
    assert runner.epoch == 2 and runner.iter == 8
    expected = safe_torch_load(osp.join(uninterrupted_run, 'epoch_2.pth'))
    for name, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, expected['state_dict'][name], rtol=0, atol=0)
    # The milestone at epoch 1 lowered the lr to 0.01: only a restored scheduler keeps it there.
    assert runner.optim_wrapper.get_lr()['lr'][0] == pytest.approx(0.01)
    assert expected['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.01)


class Payload:

    def __reduce__(self):
        return (os.system, ('touch payload_ran',))


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_unlisted_global_is_refused_and_named(tmp_path, monkeypatch, loading_path, zip_format):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, extra=Payload()), path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r'refused: it pickles the global\(s\) (posix|os)\.system'):
        safe_torch_load(path)
    assert not (tmp_path / 'payload_ran').exists()


def test_legacy_format_state_dict_loads(tmp_path, loading_path):
    path = str(tmp_path / 'legacy.pth')
    weights = torch.nn.Linear(2, 1).state_dict()
    torch.save(dict(state_dict=weights), path, _use_new_zipfile_serialization=False)
    for name, value in safe_torch_load(path)['state_dict'].items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)


class GetattrPayload:

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_only_allowed_for_history_buffer_statistics(tmp_path, loading_path):
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(state_dict={}, extra=GetattrPayload()), path)
    with pytest.raises(CheckpointError, match='not allowed'):
        safe_torch_load(path)


def test_other_pickled_class_is_refused(tmp_path, loading_path):
    import argparse
    path = str(tmp_path / 'namespace.pth')
    torch.save(dict(state_dict={}, args=argparse.Namespace(lr=1)), path)
    with pytest.raises(CheckpointError, match=r'argparse\.Namespace'):
        CheckpointLoader.load_checkpoint(path)


def _truncated_zip(path, runner_checkpoint):
    with open(runner_checkpoint, 'rb') as f:
        path.write_bytes(f.read()[:200])


def _text_file(path, runner_checkpoint):
    path.write_text('experiment notes, not weights\n')


def _empty_file(path, runner_checkpoint):
    path.write_bytes(b'')


def _directory(path, runner_checkpoint):
    path.mkdir()


def _truncated_pickle(path, runner_checkpoint):
    torch.save(dict(state_dict={}), str(path), _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:20])


@pytest.mark.parametrize('make_file, reason', [
    (_truncated_zip, r'corrupt or truncated: RuntimeError: PytorchStreamReader'),
    (_text_file, 'neither a zip archive nor a pickle file'),
    (_empty_file, 'the file is empty'),
    (_directory, 'it is a directory'),
    (_truncated_pickle, 'corrupt or truncated'),
])
def test_file_that_is_not_a_checkpoint_is_a_clear_error(runner_checkpoint, tmp_path, loading_path,
                                                        make_file, reason):
    path = tmp_path / 'x.pth'
    make_file(path, runner_checkpoint)
    with pytest.raises(CheckpointError) as error:
        safe_torch_load(str(path))
    assert str(error.value).startswith(f'{path} is not a PyTorch checkpoint (')
    assert re.search(reason, str(error.value)), str(error.value)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        safe_torch_load(str(tmp_path / 'nope.pth'))


def test_missing_checkpoint_is_a_file_not_found_error_as_without_mmrkan(tmp_path):
    """Issue 18, failure 1: mmrkan replaces mmengine's loader of local files for every model;
    code that catches FileNotFoundError (or OSError) from mmengine keeps working."""
    path = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        CheckpointLoader.load_checkpoint(path)
    with pytest.raises(OSError):
        load_checkpoint(torch.nn.Linear(1, 1), path)
    module = BaseModule(init_cfg=dict(type='Pretrained', checkpoint=path))
    module.fc = torch.nn.Linear(1, 1)
    with pytest.raises(FileNotFoundError):
        module.init_weights()
