"""Finding KAN layers in state dicts and plotting them."""
import torch
from torch import nn

from mmrkan.analysis import find_kan_layers, plot_kan_layers
from mmrkan.ops import GroupRational, KANConv2d

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def kan_state_dict() -> dict:
    model = nn.ModuleDict(
        dict(
            mixer=nn.ModuleDict(dict(act=GroupRational(num_groups=4, init='gelu'))),
            branch=nn.ModuleDict(dict(kan=KANConv2d(degree=3), rbf=KANConv2d(basis='rbf'))),
            fc=nn.Linear(3, 3)))
    return model.state_dict()


def test_find_kan_layers_by_key_names():
    state_dict = kan_state_dict()
    layers = find_kan_layers(state_dict)
    assert list(layers.rationals) == ['mixer.act']
    assert layers.rationals['mixer.act'].denominator.shape == (4, 4)
    assert sorted(layers.kan_convs) == ['branch.kan', 'branch.rbf']
    assert layers.kan_convs['branch.kan'].basis == 'chebyshev'
    assert layers.kan_convs['branch.rbf'].basis == 'rbf'
    # The plotted basis weights are the layer's effective ones: poly_weight * scaler.
    state_dict['branch.kan.scaler'][:] = 2.0
    layers = find_kan_layers(state_dict)
    assert torch.equal(layers.kan_convs['branch.kan'].basis_weight,
                       2.0 * state_dict['branch.kan.poly_weight'].double())


def test_incomplete_layers_are_not_kan_layers():
    state_dict = kan_state_dict()
    del state_dict['mixer.act.weight_denominator'], state_dict['branch.kan.scaler']
    layers = find_kan_layers(state_dict)
    assert not layers.rationals
    assert list(layers.kan_convs) == ['branch.rbf']


def test_plot_every_layer_to_png(tmp_path):
    paths = plot_kan_layers(find_kan_layers(kan_state_dict()), str(tmp_path))
    assert sorted(p.split('/')[-1] for p in paths) == [
        'kan_conv_branch.kan.png', 'kan_conv_branch.rbf.png', 'rational_mixer.act.png'
    ]
    for path in paths:
        with open(path, 'rb') as f:
            assert f.read(8) == PNG_MAGIC
