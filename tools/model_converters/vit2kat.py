"""Initialise a KAT from a timm-layout ViT/DeiT checkpoint (the paper's KAT* models).

    python tools/model_converters/vit2kat.py deit_small_patch16_224-cd65a155.pth \
        pretrain/kat-small-from-deit.pth --task classification

The MLP linears become the GR-KAN linears; each block's first rational starts as the identity
and the second as the ViT's activation (``--act-init gelu``). Train the result with a config
whose backbone has the same ``num_groups``, ``act_init``, ``rational_order`` and
``per_group_numerator`` (``--num-groups``, ``--act-init``, ``--order``,
``--per-group-numerator``; stored under ``meta``).
"""
import argparse
import os
import os.path as osp

import torch

from mmrkan.models.backbones.kat_checkpoint import (TASKS, convert_timm_vit_to_kat,
                                                    load_timm_state_dict)
from mmrkan.models.layers.gr_kan import PER_CHANNEL
from mmrkan.ops.group_rational import DEFAULT_ORDER, RATIONAL_ORDERS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='timm-layout ViT/DeiT checkpoint (.pth/.bin/.safetensors)')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--task', choices=TASKS, default='classification',
                        help='the model the output is for')
    parser.add_argument('--num-groups', type=num_groups, default=8,
                        help=f'groups of the rationals: an int, or {PER_CHANNEL!r}')
    parser.add_argument('--act-init', default='gelu', choices=('gelu', 'swish', 'identity'),
                        help='initial function of the second rational (the ViT activation)')
    parser.add_argument('--order', type=int, nargs=2, default=list(DEFAULT_ORDER),
                        metavar=('M', 'N'), help='numerator and denominator degrees of the '
                        f'rationals, one of {", ".join(map(str, RATIONAL_ORDERS))}')
    parser.add_argument('--per-group-numerator', action='store_true',
                        help='one numerator per group (default: one shared numerator)')
    args = parser.parse_args()
    if tuple(args.order) not in RATIONAL_ORDERS:
        parser.error(f'--order {" ".join(map(str, args.order))} is not supported; allowed: '
                     + ', '.join(' '.join(map(str, order)) for order in RATIONAL_ORDERS))
    return args


def num_groups(text: str):
    if text == PER_CHANNEL:
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not supported; allowed: a positive int '
                                         f'or {PER_CHANNEL!r}')
    return int(text)


def main() -> None:
    args = parse_args()
    state_dict = convert_timm_vit_to_kat(
        load_timm_state_dict(args.src), task=args.task, num_groups=args.num_groups,
        act_init=args.act_init, rational_order=tuple(args.order),
        per_group_numerator=args.per_group_numerator)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = {'source': osp.basename(args.src), 'task': args.task, 'act_init': args.act_init,
            'num_groups': args.num_groups, 'rational_order': tuple(args.order),
            'per_group_numerator': args.per_group_numerator}
    torch.save({'state_dict': state_dict, 'meta': meta}, args.dst)
    print(f'{args.task}: {len(state_dict)} tensors written to {args.dst}')


if __name__ == '__main__':
    main()
