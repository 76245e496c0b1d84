from .rkan_block import RKANBlock  # noqa: F401
from .gr_kan import GRKAN, rational_gain  # noqa: F401
from .kan_linear import BSplineKAN, KANLinear  # noqa: F401
from .kat_block import KATBlock, RelPosMultiheadAttention  # noqa: F401
from .norm import LayerNorm2d  # noqa: F401
from .pau import PAU  # noqa: F401
from .attention import (CBAM, EfficientChannelAttention, EfficientLocalAttention,  # noqa: F401
                        ShuffleAttention, SimAM, SqueezeExcitation)
