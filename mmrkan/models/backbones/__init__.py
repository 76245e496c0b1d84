from .rkan import RKAN  # noqa: F401
from .kat import KAT, KATDet  # noqa: F401
from .pyramidnet import PyramidNet  # noqa: F401
from .regnety import RegNetY  # noqa: F401
from .vit_kan import ViTKAN  # noqa: F401
