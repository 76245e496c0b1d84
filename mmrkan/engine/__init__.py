from . import optimizers  # noqa: F401
from .checkpoint import (RUNNER_SAFE_GLOBALS, CheckpointError, register_safe_checkpoint_loader,
                         safe_torch_load)

register_safe_checkpoint_loader()

__all__ = ['CheckpointError', 'RUNNER_SAFE_GLOBALS', 'safe_torch_load', 'register_safe_checkpoint_loader']
