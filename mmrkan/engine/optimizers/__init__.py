
from .layer_decay_optim_wrapper_constructor import BackboneLayerDecayOptimWrapperConstructor  # noqa: F401,E501
