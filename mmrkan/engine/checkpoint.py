"""Safe checkpoint loading for torch >= 2.6.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then defaults to
``weights_only=True`` and refuses the numpy scalars/arrays and ``HistoryBuffer`` objects that the
Runner itself writes, so resume, ``load_from`` and ``tools/test.py CKPT`` all break. Turning
``weights_only`` off would execute arbitrary code from a malicious file. Instead mmrkan replaces
mmengine's local-file checkpoint loader by one that keeps ``weights_only=True`` and allow-lists
exactly the harmless globals the Runner writes; any other pickled global is refused with an error
that names it.
"""
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, List, Optional, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: missing, corrupt, or carrying unsafe pickled globals."""


def _numpy_globals() -> List[Callable]:
    """The numpy reconstructors and dtype classes that pickled arrays and scalars reference."""
    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_classes = [type(np.dtype(t)) for t in np.sctypeDict.values()]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *set(dtype_classes)]


_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Stands in for ``builtins.getattr`` while unpickling.

    A pickled ``HistoryBuffer`` refers to its statistics methods as ``getattr(HistoryBuffer,
    'mean')``; a general ``getattr`` would reach any attribute of any allowed object, so only
    these lookups are honoured.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


# The objects an mmengine Runner pickles into its checkpoints (message hub, numpy values).
RUNNER_SAFE_GLOBALS: List[Any] = [HistoryBuffer, *_numpy_globals(),
                                  (_history_buffer_statistic, 'builtins.getattr')]


def safe_torch_load(filename: str, map_location: Optional[Union[str, torch.device, Callable]] = None) -> Any:
    """``torch.load(filename, weights_only=True)`` allowing only ``RUNNER_SAFE_GLOBALS``.

    Raises:
        CheckpointError: if the file is missing, is not a torch checkpoint, or pickles a global
            outside the allow-list (the message names it).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise CheckpointError(f'checkpoint {filename!r} does not exist')
    try:
        with torch.serialization.safe_globals(RUNNER_SAFE_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_globals(filename)
        if unsafe:
            raise CheckpointError(
                f'checkpoint {filename!r} was refused: it pickles the global(s) {", ".join(unsafe)}, '
                'which are not among the objects an mmengine Runner writes. Loading it could run '
                'arbitrary code; if you trust the file, convert it to a plain state dict first.'
            ) from None
        raise CheckpointError(f'checkpoint {filename!r} could not be unpickled: {error}') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f'checkpoint {filename!r} is corrupt or truncated, or not a torch checkpoint '
            f'({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""})') from None


def _unsafe_globals(filename: str) -> List[str]:
    allowed = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}' for g in RUNNER_SAFE_GLOBALS}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: no way to list its globals
        return []
    return [name for name in found if name not in allowed]


def register_safe_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints (resume, load_from, init_cfg) with ``safe_torch_load``."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safely, force=True)


def load_from_local_safely(filename: str, map_location: Optional[Union[str, torch.device, Callable]]) -> Any:
    # mmengine logs the loader's name minus its first 10 characters ('load_from_').
    return safe_torch_load(filename, map_location)
