"""Name the files of a sample whose image or label map fails to load during a run.

mmcv's ``LoadImageFromFile`` stops with ``AssertionError: failed to load image`` and mmseg's
``LoadAnnotations`` with ``OSError: image file is truncated`` (no file name), as tracebacks from
inside the data loader. ``tools/misc/check_dataset.py --decode`` finds such files beforehand.
"""
from typing import Any, Iterator, Optional

from mmengine.hooks import Hook

from mmrkan.registry import register_hook

# Keys of a dataset's data info that name the files its loading transforms read.
FILE_KEYS = ('img_path', 'seg_map_path')


class DataLoadError(RuntimeError):
    """A sample's image or label map could not be loaded; the message names its files."""


class NamingPipeline:
    """A dataset's pipeline whose loading transforms (``Load*``) name the sample's files when
    they fail; everything else is the wrapped ``Compose``'s."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def __call__(self, data: dict) -> Optional[dict]:
        files = ', '.join(str(data[key]) for key in FILE_KEYS if isinstance(data, dict) and data.get(key))
        for transform in self.pipeline.transforms:
            try:
                data = transform(data)
            except Exception as error:
                if not type(transform).__name__.startswith('Load'):
                    raise
                message = ' '.join(str(error).split()) or 'no message'
                raise DataLoadError(f'{type(transform).__name__} could not load {files}: '
                                    f'{type(error).__name__}: {message}; tools/misc/check_dataset.py CONFIG '
                                    '--decode finds every such file') from error
            if data is None:
                return None
        return data

    def __getattr__(self, name: str) -> Any:
        if name == 'pipeline':  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def __repr__(self) -> str:
        return repr(self.pipeline)


def _datasets(dataset: Any) -> Iterator[Any]:
    """A dataset and the ones its wrappers (RepeatDataset, ConcatDataset...) hold."""
    yield dataset
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        yield from _datasets(inner)
    for inner in getattr(dataset, 'datasets', None) or []:
        yield from _datasets(inner)


def name_failing_files(dataset: Any) -> None:
    """Wrap the pipelines of ``dataset`` (and of the datasets it wraps) in
    :class:`NamingPipeline`; idempotent."""
    for part in _datasets(dataset):
        pipeline = getattr(part, 'pipeline', None)
        if pipeline is not None and hasattr(pipeline, 'transforms') and not isinstance(pipeline, NamingPipeline):
            part.pipeline = NamingPipeline(pipeline)


@register_hook()
class DataLoadErrorHook(Hook):
    """Report an image or label map that fails to load with its path, as a
    :class:`DataLoadError`, instead of a traceback without a file name."""
    priority = 'VERY_HIGH'  # before the data loader's workers start

    def before_train_epoch(self, runner) -> None:
        name_failing_files(runner.train_dataloader.dataset)

    def before_val_epoch(self, runner) -> None:
        name_failing_files(runner.val_dataloader.dataset)

    def before_test_epoch(self, runner) -> None:
        name_failing_files(runner.test_dataloader.dataset)
