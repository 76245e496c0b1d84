"""Safe checkpoint loading on every supported torch (2.1 to 2.15).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then defaults to
``weights_only=True`` and refuses the numpy scalars/arrays and ``HistoryBuffer`` objects that the
Runner itself writes, so resume, ``load_from`` and ``tools/test.py CKPT`` all break, while on older
torch ``torch.load`` unpickles anything, which can run arbitrary code from a malicious file.
mmrkan replaces mmengine's local-file checkpoint loader by one that allows exactly the harmless
globals the Runner writes and refuses any other pickled global with an error that names it:

- torch >= 2.6: ``torch.load(weights_only=True)`` with those globals allow-listed;
- torch < 2.6, whose ``weights_only`` cannot allow-list them (or not in the ``(callable, name)``
  form used below): ``torch.load`` with a restricted unpickler (``pickle_module``) that resolves
  only the same globals plus the ones torch's own ``weights_only`` unpickler allows.
"""
import _compat_pickle
import codecs
import collections
import functools
import os.path as osp
import pickle
import types
import zipfile
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: missing, corrupt, or carrying unsafe pickled globals."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file that does not exist.

    Also a ``FileNotFoundError``, as mmengine's own loader raises, so code that catches
    ``OSError`` keeps working after ``import mmrkan`` replaces that loader.
    """


class _Refused(pickle.UnpicklingError):
    """An object the checkpoint must not unpickle: a global outside the allow-list, or a call."""

    def __init__(self, message: str, global_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.global_name = global_name


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
    raise _Refused(f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


# The objects an mmengine Runner pickles into its checkpoints (message hub, numpy values).
RUNNER_SAFE_GLOBALS: List[Any] = [HistoryBuffer, *_numpy_globals(),
                                  (_history_buffer_statistic, 'builtins.getattr')]


# torch >= 2.6: weights_only=True is the default and allow-lists (callable, name) pairs.
_TORCH_ALLOW_LISTS = torch.torch_version.TorchVersion(torch.__version__) >= (2, 6)

# How a torch checkpoint starts: a zip archive (torch >= 1.6) or a pickle (legacy format).
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTOCOL_OPCODE = b'\x80'
# What torch.load raises for a file that is not a readable checkpoint (a RuntimeError only from
# its zip reader: others, such as a CUDA map_location without a GPU, are not about the file).
_NOT_A_CHECKPOINT_ERRORS = (EOFError, KeyError, ValueError, zipfile.BadZipFile)


def _global_name(entry: Any) -> str:
    return entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}'


def safe_torch_load(filename: str, map_location: Optional[Union[str, torch.device, Callable]] = None) -> Any:
    """Load a checkpoint allowing only ``RUNNER_SAFE_GLOBALS`` besides tensors and containers.

    Raises:
        CheckpointNotFoundError: if the file is missing (a ``CheckpointError`` and a
            ``FileNotFoundError``).
        CheckpointError: if the file is not a PyTorch checkpoint, or pickles a global outside the
            allow-list (the message names it).
    """
    filename = osp.expanduser(filename)
    if not osp.exists(filename):
        raise CheckpointNotFoundError(f'checkpoint {filename!r} does not exist')
    _check_looks_like_a_checkpoint(filename)
    try:
        if _TORCH_ALLOW_LISTS:
            with torch.serialization.safe_globals(RUNNER_SAFE_GLOBALS):
                return torch.load(filename, map_location=map_location, weights_only=True)
        return _restricted_load_checkpoint(filename, map_location)
    except pickle.UnpicklingError as error:
        raise _unpickling_failure(filename, error) from None
    except _NOT_A_CHECKPOINT_ERRORS as error:
        raise _not_a_checkpoint(filename, error) from None
    except RuntimeError as error:
        if 'PytorchStreamReader' not in str(error):
            raise
        raise _not_a_checkpoint(filename, error) from None


def _check_looks_like_a_checkpoint(filename: str) -> None:
    if osp.isdir(filename):
        raise CheckpointError(f'{filename} is not a PyTorch checkpoint (it is a directory)')
    with open(filename, 'rb') as f:
        start = f.read(len(_ZIP_MAGIC))
    if not start:
        raise CheckpointError(f'{filename} is not a PyTorch checkpoint (the file is empty)')
    if not (start.startswith(_ZIP_MAGIC) or start.startswith(_PICKLE_PROTOCOL_OPCODE)):
        raise CheckpointError(f'{filename} is not a PyTorch checkpoint (it is neither a zip '
                              'archive nor a pickle file)')


def _not_a_checkpoint(filename: str, error: BaseException) -> CheckpointError:
    message = str(error).splitlines()[0] if str(error) else ''
    return CheckpointError(f'{filename} is not a PyTorch checkpoint (corrupt or truncated: '
                           f'{type(error).__name__}: {message})')


def _unpickling_failure(filename: str, error: pickle.UnpicklingError) -> CheckpointError:
    """A refusal naming the unsafe global (or why an object was refused), else a bad file."""
    if not isinstance(error, _Refused):
        # torch's weights_only messages differ between versions and formats: find what was refused
        # with the restricted unpickler, which resolves no global outside the allow-list either.
        try:
            _restricted_load_checkpoint(filename, map_location='cpu')
        except _Refused as refusal:
            error = refusal
        except Exception as failure:  # whatever makes the file unreadable
            return _not_a_checkpoint(filename, failure)
        else:  # only torch's stricter unpickler objects (to an opcode, not a global)
            return CheckpointError(f'checkpoint {filename!r} was refused by '
                                   f'torch.load(weights_only=True): {str(error).splitlines()[0]}')
    if error.global_name:
        return _refused(filename, [error.global_name])
    return CheckpointError(f'checkpoint {filename!r} was refused: {error}')


def _refused(filename: str, unsafe: List[str]) -> CheckpointError:
    return CheckpointError(
        f'checkpoint {filename!r} was refused: it pickles the global(s) {", ".join(unsafe)}, '
        'which are not among the objects an mmengine Runner writes. Loading it could run '
        'arbitrary code; if you trust the file, convert it to a plain state dict first.')


@functools.lru_cache(maxsize=None)
def _restricted_globals() -> Dict[str, Any]:
    """Name -> object of every global the restricted unpickler resolves (torch < 2.6)."""
    from torch import _weights_only_unpickler  # torch's own list: tensors, storages, dtypes
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    # Builtins that torch >= 2.6's weights_only unpickler allows too (the Runner's checkpoints
    # hold a Counter; protocol-2 pickles encode bytes, e.g. numpy buffers, with _codecs.encode).
    allowed.update({'_codecs.encode': codecs.encode, 'builtins.set': set,
                    'builtins.frozenset': frozenset, 'builtins.bytearray': bytearray,
                    'builtins.complex': complex, 'collections.Counter': collections.Counter})
    for entry in RUNNER_SAFE_GLOBALS:
        allowed[_global_name(entry)] = entry[0] if isinstance(entry, tuple) else entry
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allowed globals, by name, without importing anything."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles (torch.save's default) name builtins the Python 2 way, e.g.
        # __builtin__.getattr; pickle's own find_class maps these, so do the same.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _restricted_globals()
        qualified = f'{module}.{name}'
        if qualified not in allowed:
            raise _Refused(f'{qualified} is not allowed in a checkpoint', global_name=qualified)
        return allowed[qualified]


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) subclasses its Unpickler and calls its load (legacy format).
_RESTRICTED_PICKLE = types.ModuleType('mmrkan_restricted_pickle')
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = _restricted_load


def _restricted_load_checkpoint(filename: str, map_location: Any) -> Any:
    return torch.load(filename, map_location=map_location, weights_only=False,
                      pickle_module=_RESTRICTED_PICKLE)


def register_safe_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints (resume, load_from, init_cfg) with ``safe_torch_load``."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safely, force=True)


def load_from_local_safely(filename: str, map_location: Optional[Union[str, torch.device, Callable]]) -> Any:
    # mmengine logs the loader's name minus its first 10 characters ('load_from_').
    return safe_torch_load(filename, map_location)
