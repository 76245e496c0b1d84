
from .rkan import RKAN  # noqa: F401
from .kat import KAT, KATDet  # noqa: F401
