from .runner import (ToolError, build_runner, check_data_roots, exit_on_user_error, load_config,
                     set_work_dir, without_amp)

__all__ = ['ToolError', 'build_runner', 'check_data_roots', 'exit_on_user_error', 'load_config', 'set_work_dir',
           'without_amp']
