"""User errors of the tools: one ``error: ...`` line on stderr and exit status 2, as argparse
does for bad arguments. ``--debug`` (or ``MMRKAN_DEBUG=1``) shows the traceback instead.

A run that diverged (:class:`~mmrkan.engine.TrainingDiverged`) and a file the data loader could
not load (:class:`~mmrkan.engine.DataLoadError`) end the same way."""
import functools
import os
import sys
import traceback
from typing import Any, Callable, Iterator, List, Optional, Tuple

from mmrkan.engine import DataLoadError, TrainingDiverged
from mmrkan.engine.checkpoint import CheckpointError

DEBUG_ENV = 'MMRKAN_DEBUG'


class ToolError(Exception):
    """A problem with the user's input (config, data, checkpoint), reported without a traceback."""


def enable_debug() -> None:
    """Show tracebacks of user errors, in this process and the processes it starts."""
    os.environ[DEBUG_ENV] = '1'


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, '') not in ('', '0')


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr, from the first process of a distributed run only."""
    if os.environ.get('RANK', '0') == '0':
        print(f'warning: {" ".join(message.split())}', file=sys.stderr)


def _worker_message(message: str) -> str:
    """The message of an exception re-raised from a data loader worker, without the worker's
    traceback that torch puts in front of it."""
    if 'Original Traceback' not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    return last.split(': ', 1)[1] if ': ' in last else last


def _registry_message(error: KeyError) -> Optional[str]:
    """The message of an mmengine registry KeyError (a type that is not registered), else None."""
    message = str(error.args[0]) if error.args else ''
    return f'unknown type in the config: {message}' if 'registry' in message else None


def exit_on_user_error(main: Callable[[], None]) -> Callable[[], None]:
    """Run ``main``; report user errors (bad config, missing data, bad checkpoint) in one line
    on stderr and exit with status 2. Other exceptions are bugs and keep their traceback."""

    @functools.wraps(main)
    def wrapped() -> None:
        try:
            main()
        except (ToolError, CheckpointError, TrainingDiverged, DataLoadError, KeyError) as error:
            # A KeyError is a user error only when the registry raised it: the analysis tools
            # build models without the early checks of the train and test tools.
            message = _registry_message(error) if isinstance(error, KeyError) else _worker_message(str(error))
            if message is None or debug_enabled():
                raise
            hint = ' (--debug shows the traceback)' if error.__cause__ is not None else ''
            print(f'error: {" ".join(message.split())}{hint}', file=sys.stderr)
            sys.exit(2)

    return wrapped


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def describe_exception(error: BaseException) -> str:
    """The message of an exception raised while building from a config, in one line.

    A registry ``KeyError`` becomes "unknown type ..."; an exception without a message (a bare
    ``assert`` in a library) is described by the source line that raised it.
    """
    if isinstance(error, KeyError):
        registry = _registry_message(error)
        if registry is not None:
            return registry
        message = str(error.args[0]) if error.args else ''
    else:
        message = str(error)
    if not message.strip():
        innermost = list(_exception_chain(error))[-1]
        frame = traceback.extract_tb(innermost.__traceback__)[-1]
        message = (f'{type(error).__name__} at {frame.filename}:{frame.lineno}: '
                   f'{(frame.line or "").strip()}')
    return message


def building_classes(error: BaseException) -> List[str]:
    """Names of the classes being built when ``error`` was raised, innermost first: from the
    ``__init__`` frames it passed and from mmengine's ``build_from_cfg`` frames (which also name
    a class whose constructor refused its arguments, or a type not in the registry)."""
    names = []
    # Causes were raised below the frames of the exceptions that chain them: outermost first.
    for exception in _exception_chain(error):
        tb = exception.__traceback__
        while tb is not None:
            frame_locals = tb.tb_frame.f_locals
            name = tb.tb_frame.f_code.co_name
            if name == '__init__' and 'self' in frame_locals:
                names.append(type(frame_locals['self']).__name__)
            elif name == 'build_from_cfg':
                built = frame_locals.get('obj_cls')
                cfg = frame_locals.get('cfg')
                built_type = cfg.get('type') if isinstance(cfg, dict) else None
                if isinstance(built, type):
                    names.append(built.__name__)
                elif isinstance(built_type, str):
                    names.append(built_type.rsplit('.', 1)[-1])
            tb = tb.tb_next
    return names[::-1]


def innermost_build(error: BaseException) -> Tuple[Any, Any, Optional[str]]:
    """``(class, registry, type name)`` of the innermost mmengine ``build_from_cfg`` call that
    ``error`` passed: the class whose constructor refused its arguments (None when the type is
    not registered), the registry searched and the config's type name."""
    found: Tuple[Any, Any, Optional[str]] = (None, None, None)
    for exception in _exception_chain(error):
        tb = exception.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == 'build_from_cfg':
                frame_locals = tb.tb_frame.f_locals
                cfg = frame_locals.get('cfg')
                type_name = cfg.get('type') if isinstance(cfg, dict) else None
                built = frame_locals.get('obj_cls')
                found = (built if isinstance(built, type) else None, frame_locals.get('registry'),
                         type_name if isinstance(type_name, str) else None)
            tb = tb.tb_next
        if found != (None, None, None):
            break
    return found
