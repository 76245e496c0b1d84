"""mmrkan: Kolmogorov-Arnold Network backbones (RKAN, KAT) for OpenMMLab 2.x.

Importing the package registers every mmrkan model, layer, hook and optimizer constructor into
the registries of mmdet, mmseg and mmpretrain, and mmrkan's image classifiers into mmpretrain's
``ModelHub`` (``mmpretrain.get_model('kat-small_8xb128_in1k')``).
"""
from .version import __version__
from . import ops  # noqa: F401,E402
from . import models  # noqa: F401,E402
from . import engine  # noqa: F401,E402
from .apis.model_index import register_on_import  # noqa: E402

register_on_import()  # our classifiers, by name, in mmpretrain's get_model() / list_models()

__all__ = ['__version__']
