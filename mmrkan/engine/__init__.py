from . import optimizers  # noqa: F401
from .checkpoint import (RUNNER_SAFE_GLOBALS, CheckpointError, register_safe_checkpoint_loader,
                         safe_torch_load)
from .hooks import (DataLoadError, DataLoadErrorHook, DivergenceCheckHook, KeepInitialisedKeysHook,
                    TrainingDiverged)

register_safe_checkpoint_loader()

__all__ = ['CheckpointError', 'DataLoadError', 'DataLoadErrorHook', 'DivergenceCheckHook',
           'KeepInitialisedKeysHook', 'RUNNER_SAFE_GLOBALS', 'TrainingDiverged', 'safe_torch_load',
           'register_safe_checkpoint_loader']
