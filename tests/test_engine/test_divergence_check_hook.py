"""DivergenceCheckHook on its own (the training runs that show it at work are in
tests/test_tools/test_divergence.py): no checkpoint with a non-finite tensor is written; AMP's
dynamic loss scaling handles infinite gradients itself; bad settings are refused."""
from types import SimpleNamespace

import pytest
import torch

from mmrkan.engine import DivergenceCheckHook, TrainingDiverged


def test_a_checkpoint_with_non_finite_tensors_is_never_written(tmp_path):
    hook = DivergenceCheckHook()
    runner = SimpleNamespace(work_dir=str(tmp_path))
    finite = {'state_dict': {'w': torch.ones(2)}, 'optimizer': {'state': {0: {'exp_avg': torch.zeros(2)}}}}
    hook.before_save_checkpoint(runner, finite)
    optimizer_nan = {'state_dict': {'w': torch.ones(2)},
                     'optimizer': {'state': {0: {'exp_avg': torch.tensor([0.0, float('inf')])}}}}
    with pytest.raises(TrainingDiverged, match=r'1 non-finite tensors \(optimizer\.state\.0\.exp_avg\)'):
        hook.before_save_checkpoint(runner, optimizer_nan)
    with pytest.raises(TrainingDiverged, match=r'state_dict\.w\); no checkpoint was written'):
        hook.before_save_checkpoint(runner, {'state_dict': {'w': torch.tensor([float('nan')])}})


def test_with_a_dynamic_loss_scaler_an_infinite_gradient_norm_is_no_divergence():
    # AMP's scaler skips the step of an overflowing gradient: the weights are checked instead.
    hub = SimpleNamespace(log_scalars={'train/grad_norm': SimpleNamespace(current=lambda: float('inf'))})
    plain = SimpleNamespace(optim_wrapper=SimpleNamespace(), message_hub=hub)
    amp = SimpleNamespace(optim_wrapper=SimpleNamespace(loss_scaler=object()), message_hub=hub)
    assert DivergenceCheckHook._checked_grad_norm(plain) == float('inf')
    assert DivergenceCheckHook._checked_grad_norm(amp) is None


@pytest.mark.parametrize('setting', [dict(interval=0), dict(loss_growth=1)])
def test_bad_settings(setting):
    with pytest.raises(ValueError, match=next(iter(setting))):
        DivergenceCheckHook(**setting)
