from .data_load_error_hook import DataLoadError, DataLoadErrorHook, name_failing_files
from .divergence_check_hook import DivergenceCheckHook, TrainingDiverged, non_finite_names
from .keep_initialised_keys_hook import KeepInitialisedKeysHook

__all__ = ['DataLoadError', 'DataLoadErrorHook', 'DivergenceCheckHook', 'KeepInitialisedKeysHook',
           'TrainingDiverged', 'name_failing_files', 'non_finite_names']
