import warnings

# mmengine imports pkg_resources lazily (``mmdet::`` config bases, environment collection), on
# which setuptools >= 81 warns at every command: not ours, and nothing a user can act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from .checkpoint_fit import check_checkpoint_fits, check_finite  # noqa: E402
from .config_checks import (build_model_for_checks, check_data, check_feature_channels,  # noqa: E402
                            check_pretrained_files, set_data_root)
from .data_checks import decode_problems, load_datasets  # noqa: E402
from .errors import ToolError, enable_debug, exit_on_user_error, warn  # noqa: E402
from .runner import build_runner, check_before_run, load_config, set_work_dir, without_amp  # noqa: E402

__all__ = ['ToolError', 'build_model_for_checks', 'build_runner', 'check_before_run', 'check_checkpoint_fits',
           'check_data', 'check_feature_channels', 'check_finite', 'check_pretrained_files', 'decode_problems',
           'enable_debug', 'exit_on_user_error', 'load_config', 'load_datasets', 'set_data_root', 'set_work_dir',
           'warn', 'without_amp']
