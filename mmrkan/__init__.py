"""mmrkan: Kolmogorov-Arnold Network backbones (RKAN, KAT) for OpenMMLab 2.x.

Importing the package registers every mmrkan model, layer, hook and optimizer constructor into
the registries of mmdet, mmseg and mmpretrain.
"""
from .version import __version__
from . import ops  # noqa: F401,E402
from . import models  # noqa: F401,E402
from . import engine  # noqa: F401,E402

__all__ = ['__version__']
