from .checkpoint_fit import check_checkpoint_fits
from .config_checks import build_model_for_checks, check_data, check_pretrained_files, set_data_root
from .errors import ToolError, enable_debug, exit_on_user_error
from .runner import build_runner, check_before_run, load_config, set_work_dir, without_amp

__all__ = ['ToolError', 'build_model_for_checks', 'build_runner', 'check_before_run', 'check_checkpoint_fits',
           'check_data', 'check_pretrained_files', 'enable_debug', 'exit_on_user_error', 'load_config',
           'set_data_root', 'set_work_dir', 'without_amp']
