"""PAU, the Padé Activation Unit of Molina et al. (ICLR 2020), on the group-rational op."""
from typing import Sequence, Tuple

from mmrkan.ops.group_rational import (DEFAULT_ORDER, RATIONAL_INIT_NAMES, GroupRational,
                                        check_order)
from mmrkan.registry import register_model

# The coefficients of Molina et al.'s default PAU ("pade_optimized_leakyrelu" in their code):
# a fit of leaky ReLU (slope 0.01) for the order (5, 4) under the safe-PAU denominator
# 1 + |b1||x| + ... + |b4||x|^4, the denominator of the group-rational op.
PAU_LEAKY_RELU = ([
    3.35583603e-02, 5.05000375e-01, 1.65343934e+00, 2.01001052e+00, 9.31901999e-01,
    1.52424124e-01
], [3.30847488e-06, 3.98021568e+00, 5.12471206e-07, 3.01830109e-01])


@register_model()
class PAU(GroupRational):
    """Padé Activation Unit: one learnable rational function for a whole layer.

    ``F(x) = (a0 + a1 x + ... + a5 x^5) / (1 + |b1||x| + ... + |b4||x|^4)`` applied to every
    element, whatever the tensor's shape (Molina et al.'s "safe" PAU): a :class:`GroupRational`
    with one group, 10 parameters (``weight_numerator (1, 6)``, ``weight_denominator (1, 4)``).
    Its own initialisation, ``'leaky_relu'``, is the PAU authors' fit of leaky ReLU; the
    group-rational inits (``identity``, ``swish``, ``gelu``, ``random``) are accepted too.

    Args:
        init: ``'leaky_relu'`` (default, order (5, 4) only) or a group-rational init.
        order: ``(m, n)``, as :class:`GroupRational`.
    """

    def __init__(self, init: str = 'leaky_relu', order: Sequence[int] = DEFAULT_ORDER) -> None:
        order = check_order('PAU', order)
        if init == 'leaky_relu' and order != DEFAULT_ORDER:
            raise ValueError(f"PAU: init='leaky_relu' is fitted for the order {DEFAULT_ORDER} "
                             f'only, got order={order!r}; other orders take the inits '
                             f'{RATIONAL_INIT_NAMES}')
        super().__init__(num_groups=1, init=init, order=order)

    @classmethod
    def init_names(cls) -> Tuple[str, ...]:
        return ('leaky_relu', ) + RATIONAL_INIT_NAMES

    def initial_coefficients(self):
        if self.init == 'leaky_relu':
            return PAU_LEAKY_RELU
        return super().initial_coefficients()

    def extra_repr(self) -> str:
        text = f'init={self.init!r}'
        return text if self.order == DEFAULT_ORDER else f'{text}, order={self.order}'
