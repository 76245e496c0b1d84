"""Convert an official (timm-layout) KAT checkpoint to mmrkan's layout.

    python tools/model_converters/kat_timm2mmrkan.py kat_small_patch16_224.pth \
        pretrain/kat-small_in1k.pth --task classification

``--task classification`` gives a checkpoint for the mmpretrain classifiers (configs/kat/*_in1k),
``segmentation`` a KAT backbone for the UperNet configs, ``detection`` a KATDet backbone for the
Mask R-CNN configs (both loaded with ``backbone.init_cfg=dict(type='Pretrained', ...)``).
The rationals keep their shapes: the tool prints the backbone settings they need (e.g. a
checkpoint of the authors' ``KAT_1DGroup``, with one numerator per group, needs
``per_group_numerator=True``), and stores them under ``meta['backbone_settings']``.
"""
import argparse
import os
import os.path as osp

import torch

from mmrkan.models.backbones.kat_checkpoint import (TASKS, convert_timm_kat, load_timm_state_dict,
                                                    rational_settings)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official KAT checkpoint (.pth/.bin/.safetensors)')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--task', choices=TASKS, default='classification',
                        help='the model the output is for')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    timm_state_dict = load_timm_state_dict(args.src)
    state_dict = convert_timm_kat(timm_state_dict, task=args.task)
    settings = rational_settings(timm_state_dict)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = {'source': osp.basename(args.src), 'task': args.task, 'backbone_settings': settings}
    torch.save({'state_dict': state_dict, 'meta': meta}, args.dst)
    print(f'{args.task}: {len(state_dict)} tensors written to {args.dst}')
    print('backbone settings of its rationals: ' +
          ', '.join(f'{key}={value!r}' for key, value in settings.items()))


if __name__ == '__main__':
    main()
