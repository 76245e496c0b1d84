"""Parameter and FLOP counting with mmengine's ``FlopAnalyzer``, the KAN ops included.

mmengine traces the model and counts each op with a handle; ops without one (elementwise ops,
the compiled ``mmrkan::*`` KAN ops, ``scaled_dot_product_attention``) count as zero. The handles
here give the KAN ops their real cost in mmengine's unit, used for every op: a (fused)
multiply-add is ONE "FLOP", as for convolutions and linears, so totals are the GMACs that the
papers call GFLOPs; any other arithmetic operation (abs, division, tanh, exp) is one FLOP too.

Group-rational activation, per element, as the kernels evaluate it
(``RATIONAL_FLOPS_PER_ELEMENT = 11``)::

    P(x) = a0 + x(a1 + x(a2 + x(a3 + x(a4 + x a5))))        Horner, degree 5: 5 multiply-adds
    |x|                                                                          1
    Q(x) = 1 + |x|(|b1| + |x|(|b2| + |x|(|b3| + |x||b4|)))  Horner, degree 4: 4 multiply-adds
    P / Q                                                                        1

(``|b_k|`` is computed once per group.) Counting multiplies and adds separately instead gives
20 per element; that would weigh the rationals twice as heavily against the linears as they are.
Other orders ``(m, n)`` count the same way, ``m + n + 2`` per element
(:func:`rational_flops_per_element`): 7 for (3, 2), 15 for (7, 6).

Chebyshev KAN convolution of degree ``D`` (RKAN), per output element, 9 taps of::

    base multiply-add w_base[p] * x_p                1
    tanh(x_p)                                        1   (D >= 1)
    recursion T_k = 2t T_{k-1} - T_{k-2}, k = 2..D   D   (2t once, then one multiply-add per T_k;
                                                          D >= 2)
    sum_k W[p, k] T_k                                D + 1 multiply-adds

i.e. ``9 * (2D + 3)`` for D >= 2: 81 for D = 3, 63 for D = 2. The tanh and the basis are
counted per tap, as the authors' unfold-based layer computes them (evaluating the basis once per
input element does about 9x fewer of those operations). The RBF basis counts ``9 * (1 + 4K)``
for ``K`` bumps: per bump ``(x - c) / w`` (one multiply-add), the square, the exp and the weight
multiply-add. The other families and options, per tap, on top of the base multiply-add and the
``K`` weight multiply-adds: Legendre, Hermite and Jacobi ``1 + 2 (D - 1)`` for the recursion
(``B_1``, then two multiply-adds per ``B_k``); B-spline of order ``k`` on ``G`` intervals,
efficient-KAN's Cox-de Boor recursion: 2 comparisons per order-0 interval, then 3 operations per
basis function of each order, ``2 (G + 2k) + 3 sum_m (G + 2k - m)``; normalisation tanh 1,
arctan 5, min-max 4, standardization 4 (none for the constant-only degree 0); SiLU in the base
term 2.

Attention: ``scaled_dot_product_attention`` has no mmengine handle, and the KAT paper's FLOPs
leave its two matrix products out as well (KAT-S: 4.35 G; about 4.7 G with them), so by default
they are not counted; ``count_attention=True`` adds them (``Lq * Lk * (E + Ev)`` multiply-adds
per head and image).
"""
import math
from collections import Counter
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.analysis.print_helper import complexity_stats_table
from torch import nn

from mmrkan.ops.kan_conv_options import (BASE_ACTIVATION_CODES, BASIS_CODES,
                                         DEFAULT_NORMALIZATION, NORMALIZATION_CODES,
                                         check_choice)

RATIONAL_FLOPS_PER_ELEMENT = 11
_BASIS_NAMES = {code: name for name, code in BASIS_CODES.items()}
_NORMALIZATION_NAMES = {code: name for name, code in NORMALIZATION_CODES.items()}
_ACTIVATION_NAMES = {code: name for name, code in BASE_ACTIVATION_CODES.items()}
_NORMALIZATION_FLOPS = {'none': 0, 'tanh': 1, 'arctan': 5, 'min-max': 4, 'standardization': 4}


def kan_conv2d_flops_per_output(num_functions: int,
                                basis: str = 'chebyshev',
                                normalization: Optional[str] = None,
                                base_activation: str = 'identity',
                                spline_order: int = 3) -> int:
    """FLOPs of one output element of the KAN convolution with ``num_functions`` basis
    functions (``D + 1`` for polynomial degree ``D``, ``K`` bumps for RBF, ``G + k`` for a
    B-spline of order ``k``); see the module doc."""
    check_choice('kan_conv2d_flops_per_output', 'basis', basis, tuple(BASIS_CODES))
    if normalization is None:
        normalization = DEFAULT_NORMALIZATION[basis]
    check_choice('kan_conv2d_flops_per_output', 'normalization', normalization,
                 tuple(_NORMALIZATION_FLOPS))
    base = 1 + (2 if base_activation == 'silu' else 0)
    if basis == 'rbf':
        per_tap = base + _NORMALIZATION_FLOPS[normalization] + 4 * num_functions
        return 9 * per_tap
    if basis == 'b_spline':
        cells = num_functions + spline_order  # G + 2k order-0 intervals
        recursion = 2 * cells + 3 * sum(cells - m for m in range(1, spline_order + 1))
        return 9 * (base + _NORMALIZATION_FLOPS[normalization] + recursion + num_functions)
    degree = num_functions - 1
    normalize = _NORMALIZATION_FLOPS[normalization] if degree >= 1 else 0
    if basis == 'chebyshev':
        recursion = degree if degree >= 2 else 0
    else:
        recursion = 1 + 2 * (degree - 1) if degree >= 1 else 0
    return 9 * (base + normalize + recursion + num_functions)


def rational_flops_per_element(order: Tuple[int, int] = (5, 4)) -> int:
    """FLOPs of one element of the group-rational activation of order ``(m, n)``: ``m`` and
    ``n`` Horner multiply-adds, ``|x|`` and the division."""
    m, n = order
    return m + n + 2


def _group_rational_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    # Inputs of mmrkan::group_rational_forward: x, numerator (., m + 1), denominator (g, n).
    order = get_shape(inputs[1])[-1] - 1, get_shape(inputs[2])[-1]
    return Counter(group_rational=rational_flops_per_element(order) *
                   math.prod(get_shape(outputs[0])))


def _kan_conv2d_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    # Inputs of mmrkan::kan_conv2d_forward: x, base_weight, poly_weight, norm_scale, stride,
    # basis, normalization, base_activation, basis_params (codes: kan_conv_options).
    num_functions = get_shape(inputs[2])[1]
    basis, normalization, activation = (names[inputs[i].toIValue()] for i, names in (
        (5, _BASIS_NAMES), (6, _NORMALIZATION_NAMES), (7, _ACTIVATION_NAMES)))
    # A float[] of the trace is a constant, or a prim::ListConstruct of constants.
    basis_params = inputs[8].toIValue()
    if basis_params is None:
        basis_params = [item.toIValue() for item in inputs[8].node().inputs()]
    spline_order = int(basis_params[2]) if basis == 'b_spline' else 3
    per_output = kan_conv2d_flops_per_output(num_functions, basis, normalization, activation,
                                             spline_order)
    return Counter(kan_conv2d=per_output * math.prod(get_shape(outputs[0])))


def _attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    # q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev): q @ k^T then softmax(.) @ v.
    query, key, value = (get_shape(v) for v in inputs[:3])
    queries = math.prod(query[:-1])
    return Counter(attention=queries * key[-2] * (query[-1] + value[-1]))


KAN_FLOP_HANDLES = {
    'mmrkan::group_rational_forward': _group_rational_flop_jit,
    'mmrkan::kan_conv2d_forward': _kan_conv2d_flop_jit,
}
ATTENTION_FLOP_HANDLES = {'aten::scaled_dot_product_attention': _attention_flop_jit}


class Complexity(NamedTuple):
    """What :func:`model_complexity` measures."""
    flops: int
    params: int
    flops_by_operator: Counter
    uncounted_ops: Counter  # traced ops without a FLOP handle: op name -> number of calls
    table: str  # per-module parameters and FLOPs


def model_complexity(model: nn.Module,
                     inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]],
                     count_attention: bool = False,
                     max_depth: int = 3) -> Complexity:
    """Parameters and FLOPs (multiply-adds) of ``model(*inputs)``, KAN ops included."""
    handles: Dict[str, Any] = dict(KAN_FLOP_HANDLES)
    if count_attention:
        handles.update(ATTENTION_FLOP_HANDLES)
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**handles)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return Complexity(
        flops=analyzer.total(),
        params=parameter_count(model)[''],
        flops_by_operator=analyzer.by_operator(),
        uncounted_ops=analyzer.unsupported_ops(),
        table=complexity_stats_table(analyzer, max_depth=max_depth, show_param_shapes=False))
