"""Plot what the KAN layers of a checkpoint learned, one PNG per layer.

- every GroupRational (KAT's GR-KAN): the rational function of each channel group on [-3, 3],
  one curve per group, GELU and SiLU drawn for reference (``rational_<layer>.png``);
- every KANConv2d (RKAN branches): the response ``x -> base[p] x + sum_k W[p, k] T_k(tanh x)``
  of each tap p of the shared 3x3 kernel, on a 3x3 grid of plots (``kan_conv_<layer>.png``).

The layers are found by their state-dict keys (``weight_numerator``/``weight_denominator``;
``base_weight``/``poly_weight``/``scaler``), so Runner checkpoints, plain state dicts and the
official timm KAT checkpoints all work. With ``--config`` the checkpoint is first loaded into
the config's model, which fails clearly if the two do not match.

Examples::

    python tools/analysis_tools/visualize_kan.py work_dirs/kat-micro/epoch_25.pth \\
        --config configs/demo/kat-micro_shapes-imagenet-64px.py --out-dir work_dirs/kan_plots
    python tools/analysis_tools/visualize_kan.py kat_small_patch16_224.pth
"""
import argparse
import os
import os.path as osp
from typing import Dict

import torch

from mmrkan.analysis import build_task_model, find_kan_layers, plot_kan_layers
from mmrkan.apis import ToolError, check_finite, exit_on_user_error, load_config
from mmrkan.engine.checkpoint import safe_torch_load


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot the learned KAN layers of a checkpoint')
    parser.add_argument('checkpoint', help='checkpoint file (Runner checkpoint or state dict)')
    parser.add_argument('--config', help='config of the model the checkpoint belongs to')
    parser.add_argument('--out-dir', default='work_dirs/kan_plots',
                        help='directory the PNG files are written to')
    return parser.parse_args()


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a Runner checkpoint's ``state_dict``, or of a plain state dict."""
    checkpoint = safe_torch_load(path, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise ToolError(
            f'checkpoint {path!r} holds a {type(checkpoint).__name__}, not a state dict')
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {key: value for key, value in state_dict.items() if isinstance(value, torch.Tensor)}


def check_against_config(state_dict: Dict[str, torch.Tensor], config: str) -> None:
    """Load ``state_dict`` into the model of ``config``; a mismatch is a ToolError."""
    model = build_task_model(load_config(config))
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ToolError(f'the checkpoint does not fit the model of {config}: '
                        f'{" ".join(str(error).split())}') from None
    problems = [
        f'{len(keys)} {kind} keys (e.g. {", ".join(keys[:3])})'
        for kind, keys in (('missing', result.missing_keys), ('unexpected',
                                                              result.unexpected_keys)) if keys
    ]
    if problems:
        raise ToolError(f'the checkpoint does not fit the model of {config}: '
                        f'{"; ".join(problems)}. Official timm KAT checkpoints need '
                        'tools/model_converters/kat_timm2mmrkan.py first')


@exit_on_user_error
def main() -> None:
    args = parse_args()
    state_dict = read_state_dict(args.checkpoint)
    check_finite(state_dict, args.checkpoint)  # a diverged run's curves would be empty plots
    if args.config is not None:
        check_against_config(state_dict, args.config)
    layers = find_kan_layers(state_dict)
    if not layers.rationals and not layers.kan_convs:
        raise ToolError(
            f'checkpoint {args.checkpoint!r} has no KAN layers: no keys ending in '
            'weight_numerator + weight_denominator (GroupRational) or base_weight + poly_weight + '
            'scaler (KANConv2d)')
    os.makedirs(args.out_dir, exist_ok=True)
    paths = plot_kan_layers(layers, args.out_dir)
    print(f'{len(layers.rationals)} GroupRational and {len(layers.kan_convs)} KANConv2d layers: '
          f'{len(paths)} PNG files written to {osp.abspath(args.out_dir)}')


if __name__ == '__main__':
    main()
