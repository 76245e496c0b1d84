"""mmrkan's model index (``model-index.yml`` and the ``configs/*/metafile.yml`` it lists) and its
registration in mmpretrain's ``ModelHub``, so that after ``import mmrkan``
``mmpretrain.get_model('kat-small_8xb128_in1k')``, ``list_models('kat*')`` and
``inference_model(name_or_model, image)`` find our classifiers by name, as they find mmpretrain's.

Only the image classifiers are registered: the hub builds every model in mmpretrain's scope, so
a detector or segmentor name there could only fail; those are found with ``mim search mmrkan``.
"""
import os.path as osp
import warnings
from typing import List, Optional

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_INDEX = 'model-index.yml'
CLASSIFICATION = 'Image Classification'


def model_index_root() -> Optional[str]:
    """The folder holding ``model-index.yml`` and the ``configs`` its paths are relative to: the
    installed package's ``.mim`` (made by setup.py) or, in a checkout, the repository root."""
    for root in (osp.join(PACKAGE_DIR, '.mim'), osp.dirname(PACKAGE_DIR)):
        if osp.isfile(osp.join(root, MODEL_INDEX)):
            return root
    return None


def register_classifiers() -> List[str]:
    """Add the image classifiers of mmrkan's model index to mmpretrain's ``ModelHub``; returns
    their names. Calling it again re-registers the same entries."""
    root = model_index_root()
    if root is None:
        raise FileNotFoundError(
            f'{MODEL_INDEX} is neither in {osp.join(PACKAGE_DIR, ".mim")} nor in the checkout '
            f'{osp.dirname(PACKAGE_DIR)}: reinstall mmrkan (`pip install -e .` or `pip install .`)')
    from mmpretrain.apis import ModelHub
    from modelindex.load_model_index import load

    index = load(osp.join(root, MODEL_INDEX))
    index.build_models_with_collections()
    names = []
    for model in index.models:
        if CLASSIFICATION not in {result.task for result in model.results or []}:
            continue
        name = model.name.lower()
        known = ModelHub._models_dict.get(name)
        if known is not None and osp.abspath(known.filepath) != osp.abspath(model.filepath):
            raise ValueError(f'model name {name!r} of {model.filepath} is already registered in '
                             f"mmpretrain's ModelHub by {known.filepath}")
        # What ModelHub.register_model_index() does, for a subset of the index: configs are paths
        # relative to the index root, loaded when the model is asked for.
        model.config = osp.join(root, model.config)
        ModelHub._models_dict[name] = model
        names.append(name)
    return names


def register_on_import() -> None:
    """``register_classifiers()`` for ``import mmrkan``: without its model index (a broken
    install) mmrkan still trains and tests, so that is a warning there, not an error."""
    try:
        register_classifiers()
    except FileNotFoundError as error:
        warnings.warn(f"mmrkan's classifiers are not in mmpretrain's ModelHub: {error}")
