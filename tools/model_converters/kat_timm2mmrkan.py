"""Convert an official (timm-layout) KAT checkpoint to mmrkan's layout.

    python tools/model_converters/kat_timm2mmrkan.py kat_small_patch16_224.pth \
        pretrain/kat-small_in1k.pth --task classification

``--task classification`` gives a checkpoint for the mmpretrain classifiers (configs/kat/*_in1k),
``segmentation`` a KAT backbone for the UperNet configs, ``detection`` a KATDet backbone for the
Mask R-CNN configs (both loaded with ``backbone.init_cfg=dict(type='Pretrained', ...)``).
"""
import argparse
import os
import os.path as osp

import torch

from mmrkan.models.backbones.kat_checkpoint import TASKS, convert_timm_kat, load_timm_state_dict


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official KAT checkpoint (.pth/.bin/.safetensors)')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--task', choices=TASKS, default='classification',
                        help='the model the output is for')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    state_dict = convert_timm_kat(load_timm_state_dict(args.src), task=args.task)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': state_dict, 'meta': {'source': osp.basename(args.src),
                                                   'task': args.task}}, args.dst)
    print(f'{args.task}: {len(state_dict)} tensors written to {args.dst}')


if __name__ == '__main__':
    main()
