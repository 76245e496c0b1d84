
from .simple_fpn import SimpleFeaturePyramid  # noqa: F401
