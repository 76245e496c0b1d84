"""Find the KAN layers of a state dict and plot what they learned (PNG, matplotlib Agg).

- GroupRational (keys ``<layer>.weight_numerator`` (1 or g, 6), ``<layer>.weight_denominator``
  (g, 4)): the rational function ``F(x) = P(x) / Q(x)`` of each group on [-3, 3], one curve per
  group, with GELU and SiLU drawn for reference.
- KANConv2d (keys ``<layer>.base_weight`` (9,), ``<layer>.poly_weight`` (9, K),
  ``<layer>.scaler`` (9,), optional for the RBF bases; ``<layer>.base_bias`` for the RBF bases;
  a state dict does not name the family, so every other layer is drawn as Chebyshev-tanh): the
  response of each tap p of the shared 3x3 kernel, ``x -> base[p] x + sum_k W[p, k] B_k(x)`` with
  ``W = poly_weight * scaler`` and ``B_k`` the layer's basis (``T_k(tanh x)`` for Chebyshev), on a
  3x3 grid of plots. The RBF layer's scalar ``base_bias`` (one per layer, not per tap) is not
  drawn.

The curves are evaluated with the reference formulas of :mod:`mmrkan.ops.reference`.
"""
import os.path as osp
from typing import Any, Dict, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmrkan.ops.reference import basis_functions, group_rational_reference

X_RANGE = (-3.0, 3.0)
_NUM_POINTS = 601
_RATIONAL_KEYS = ('weight_numerator', 'weight_denominator')
_KAN_CONV_KEYS = ('base_weight', 'poly_weight', 'scaler')


class RationalLayer(NamedTuple):
    numerator: torch.Tensor  # (1 or g, 6)
    denominator: torch.Tensor  # (g, 4)


class KANConvLayer(NamedTuple):
    base_weight: torch.Tensor  # (9,)
    basis_weight: torch.Tensor  # (9, K): poly_weight * scaler
    basis: str


class KANLayers(NamedTuple):
    rationals: Dict[str, RationalLayer]
    kan_convs: Dict[str, KANConvLayer]


def find_kan_layers(state_dict: Dict[str, torch.Tensor]) -> KANLayers:
    """The GroupRational and KANConv2d layers of a state dict, by layer name (key prefix)."""
    rationals, kan_convs = {}, {}
    for key in state_dict:
        if key.endswith(_RATIONAL_KEYS[0]):
            prefix = key[:-len(_RATIONAL_KEYS[0])]
            if prefix + _RATIONAL_KEYS[1] in state_dict:
                rationals[prefix.rstrip('.')] = RationalLayer(
                    *(state_dict[prefix + name].detach().double() for name in _RATIONAL_KEYS))
        elif key.endswith(_KAN_CONV_KEYS[0]):
            prefix = key[:-len(_KAN_CONV_KEYS[0])]
            # Only the RBF layers have a base bias (KANConv2d); the authors' has no scaler.
            is_rbf = prefix + 'base_bias' in state_dict
            names = _KAN_CONV_KEYS[:2] if is_rbf else _KAN_CONV_KEYS
            if all(prefix + name in state_dict for name in names):
                base, poly = (state_dict[prefix + name].detach().double() for name in names[:2])
                scaler = state_dict.get(prefix + _KAN_CONV_KEYS[2])
                if scaler is not None:
                    poly = poly * scaler.detach().double()[:, None]
                basis = 'rbf' if is_rbf else 'chebyshev'
                kan_convs[prefix.rstrip('.')] = KANConvLayer(base, poly, basis)
    return KANLayers(rationals, kan_convs)


def _new_figure(**subplots_kwargs) -> Tuple[Figure, Any]:
    """A figure drawn by the Agg canvas (no pyplot, no global backend) and its axes."""
    figure = Figure()
    FigureCanvasAgg(figure)
    return figure, figure.subplots(**subplots_kwargs)


def plot_rational_layer(name: str, layer: RationalLayer, path: str) -> None:
    """Write a PNG of the rational function of each group of one GroupRational layer."""
    x = torch.linspace(*X_RANGE, _NUM_POINTS, dtype=torch.float64)
    groups = layer.denominator.shape[0]
    # Column j of a (points, g) input is channel j, alone in group j.
    values = group_rational_reference(x[:, None].repeat(1, groups), layer.numerator,
                                      layer.denominator)
    figure, axes = _new_figure()
    for group in range(groups):
        axes.plot(x, values[:, group], linewidth=1.2, label=f'group {group}')
    axes.plot(x, F.gelu(x), 'k--', linewidth=1, label='GELU')
    axes.plot(x, F.silu(x), 'k:', linewidth=1, label='SiLU')
    axes.set(title=f'{name}: rational function per group', xlabel='x', ylabel='F(x)')
    axes.grid(alpha=0.3)
    axes.legend(fontsize='small', ncol=2)
    figure.savefig(path, dpi=100)


def plot_kan_conv_layer(name: str, layer: KANConvLayer, path: str) -> None:
    """Write a PNG of the response of each tap of one KANConv2d layer's 3x3 kernel."""
    x = torch.linspace(*X_RANGE, _NUM_POINTS, dtype=torch.float64)
    t = torch.tanh(x) if layer.basis == 'chebyshev' else x
    basis = basis_functions(t, layer.basis_weight.shape[1], layer.basis)
    figure, axes = _new_figure(nrows=3, ncols=3, sharex=True, sharey=True)
    figure.set_size_inches(8, 7)
    for tap in range(9):
        response = layer.base_weight[tap] * x + sum(
            weight * function for weight, function in zip(layer.basis_weight[tap], basis))
        row, col = divmod(tap, 3)
        ax = axes[row, col]
        ax.plot(x, response, linewidth=1.2)
        ax.axhline(0, color='grey', linewidth=0.5)
        ax.set_title(f'tap ({row - 1:+d}, {col - 1:+d})', fontsize='small')
    num_functions = layer.basis_weight.shape[1]
    kind = (f'Chebyshev degree {num_functions - 1}'
            if layer.basis == 'chebyshev' else f'RBF {num_functions} bumps')
    figure.suptitle(f'{name}: {kind} KAN kernel, response of each tap to x')
    figure.savefig(path, dpi=100)


def plot_kan_layers(layers: KANLayers, out_dir: str) -> List[str]:
    """Plot every layer into ``out_dir``; returns the written PNG paths."""
    paths = []
    for name, layer in layers.rationals.items():
        paths.append(osp.join(out_dir, f'rational_{name or "layer"}.png'))
        plot_rational_layer(name, layer, paths[-1])
    for name, layer in layers.kan_convs.items():
        paths.append(osp.join(out_dir, f'kan_conv_{name or "layer"}.png'))
        plot_kan_conv_layer(name, layer, paths[-1])
    return paths
