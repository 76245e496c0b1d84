"""Registration of mmrkan's modules into the registries of mmdet, mmseg and mmpretrain.

Each mmrkan class is written once and registered, under the same name, in the registry of every
OpenMMLab task library that may build it, so configs of any of the three tasks can name it while
keeping their own ``default_scope``.
"""
from typing import Callable, Sequence, Type, TypeVar

from mmdet import registry as mmdet_registry
from mmpretrain import registry as mmpretrain_registry
from mmseg import registry as mmseg_registry

T = TypeVar('T', bound=type)

TASK_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
_TASK_REGISTRIES = {
    'mmdet': mmdet_registry,
    'mmseg': mmseg_registry,
    'mmpretrain': mmpretrain_registry,
}


def _register(kind: str, scopes: Sequence[str]) -> Callable[[T], T]:
    unknown = set(scopes) - set(TASK_SCOPES)
    if unknown:
        raise ValueError(f'scopes={sorted(unknown)} are not task scopes; allowed: {TASK_SCOPES}')

    def wrap(cls: T) -> T:
        for scope in scopes:
            getattr(_TASK_REGISTRIES[scope], kind).register_module(module=cls)
        return cls

    return wrap


def register_model(scopes: Sequence[str] = TASK_SCOPES) -> Callable[[T], T]:
    """Class decorator: register a model/layer class into the ``MODELS`` registry of ``scopes``."""
    return _register('MODELS', scopes)


def register_hook(scopes: Sequence[str] = TASK_SCOPES) -> Callable[[T], T]:
    """Class decorator: register a hook into the ``HOOKS`` registry of ``scopes``."""
    return _register('HOOKS', scopes)


def register_optim_wrapper_constructor(
        scopes: Sequence[str] = TASK_SCOPES) -> Callable[[T], T]:
    """Class decorator: register into the ``OPTIM_WRAPPER_CONSTRUCTORS`` registry of ``scopes``."""
    return _register('OPTIM_WRAPPER_CONSTRUCTORS', scopes)


def task_registry(scope: str, kind: str = 'MODELS') -> Type:
    """The ``kind`` registry (e.g. ``'MODELS'``) of the task library ``scope``."""
    if scope not in _TASK_REGISTRIES:
        raise ValueError(f'default_scope={scope!r} is not supported; allowed: {TASK_SCOPES}')
    return getattr(_TASK_REGISTRIES[scope], kind)
