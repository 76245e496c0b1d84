"""Parameters and FLOPs of the model of a config, the KAN ops counted by their real cost.

What is counted, per task (one synthetic image of ``--shape``, tensor-mode forward):

- classifier (mmpretrain): the whole model, backbone, neck and head;
- segmentor (mmseg): backbone, neck and decode head; the auxiliary head is left out (it only
  runs in training), as mmseg's get_flops does;
- detector (mmdet): backbone, neck and heads, the RoI heads on the RPN proposals of the test
  config, as mmdet's get_flops does. The image is padded as the data preprocessor pads it.

Unit: mmengine's, one multiply-add is one FLOP (for convolutions and linears as for the KAN
ops), i.e. the "GFLOPs" the papers report are GMACs. The KAN ops, which mmengine would count as
zero, are counted by :mod:`mmrkan.analysis.complexity`:

- GroupRational: 11 per element: P by Horner (degree 5, 5 multiply-adds), |x|, Q by Horner
  (degree 4, 4 multiply-adds), one division;
- Chebyshev KANConv2d of degree D: per output element 9 taps x (base multiply-add + tanh +
  recursion (D for D >= 2) + D + 1 multiply-adds): 81 for D = 3, 63 for D = 2.

Attention products inside ``scaled_dot_product_attention`` are not counted (mmengine has no
handle for it and the KAT paper's FLOPs leave them out); ``--count-attention`` counts them.
Elementwise ops (additions, SiLU, softmax) are not counted; the tool lists them.

Examples::

    python tools/analysis_tools/get_flops.py configs/rkan/rkanet-50_8xb32_in1k.py
    python tools/analysis_tools/get_flops.py configs/kat/kat-small_8xb128_in1k.py --shape 224
    python tools/analysis_tools/get_flops.py \\
        configs/katdet/mask-rcnn_katdet-small_simplefpn_3x_coco.py --shape 1024 --show-table
"""
import argparse
from typing import Tuple

import torch
from mmengine.config import DictAction
from mmengine.model import BaseModel
from torch import nn

from mmrkan.analysis import DEFAULT_SHAPES, build_task_model, model_complexity, synthetic_batch
from mmrkan.apis import ToolError, exit_on_user_error, load_config
from mmrkan.apis.input_shape import config_input_shape
from mmrkan.ops.library import has_kernel

# mmseg's get_flops refuses these decode heads too: their tensor-mode forward needs data samples.
_UNSUPPORTED_SEG_HEADS = ('MaskFormerHead', 'Mask2FormerHead')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs of a model, the KAN ops included')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape', type=int, nargs='+', metavar=('H', 'W'),
        help='input height and width (one value: square); default: the size of the config\'s '
        'test pipeline (its last Resize, ResizeEdge or CenterCrop), else 224x224 for classifiers, '
        '512x512 for segmentors, 800x1333 for detectors')
    parser.add_argument('--count-attention', action='store_true',
                        help='also count the matrix products of scaled_dot_product_attention')
    parser.add_argument('--show-table', action='store_true',
                        help='print the parameters and FLOPs of every module (3 levels deep)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. model.backbone.arch=tiny')
    args = parser.parse_args()
    if args.shape is not None and len(args.shape) > 2:
        parser.error(f'--shape takes H [W], got {len(args.shape)} values')
    return args


class _TensorModeForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-argument module, for tracing."""

    def __init__(self, model: BaseModel, data_samples: list) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode='tensor')


def _format(value: int) -> str:
    for scale, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if value >= scale:
            return f'{value / scale:.3f}{suffix}'
    return str(value)


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.default_scope
    if args.shape is not None:
        shape: Tuple[int, int] = (args.shape[0], args.shape[-1])
        origin = '--shape'
    else:
        shape, origin = config_input_shape(cfg) or (DEFAULT_SHAPES[scope], f'the {scope} default')
    if scope == 'mmseg':
        heads = cfg.model.get('decode_head') or []
        for head in heads if isinstance(heads, list) else [heads]:
            if head.get('type') in _UNSUPPORTED_SEG_HEADS:
                raise ToolError(f'{args.config}: decode_head type {head["type"]} is not supported '
                                '(its tensor-mode forward needs data samples)')

    if not has_kernel(torch.device('cpu')):
        raise ToolError('the KAN ops are counted where the compiled mmrkan._ext ops run, but the '
                        'extension is not built (see the warning above); build it with '
                        '`pip install -e .`')
    # Fixed weights and image: a detector's RoI/mask heads cost depends on how many boxes the
    # (randomly initialised) model detects, so the count repeats from run to run.
    torch.manual_seed(0)
    model = build_task_model(cfg).eval()
    if scope == 'mmseg':
        model.auxiliary_head = None
    data = model.data_preprocessor(synthetic_batch(scope, 1, shape), False)
    with torch.no_grad():
        complexity = model_complexity(
            _TensorModeForward(model, data['data_samples']), data['inputs'],
            count_attention=args.count_attention)

    if args.show_table:
        print(complexity.table)
    split_line = '=' * 30
    by_operator = ', '.join(f'{op} {_format(count)}'
                            for op, count in complexity.flops_by_operator.most_common())
    uncounted = ', '.join(f'{op} x{calls}' for op, calls in complexity.uncounted_ops.most_common())
    print(f'{split_line}\n'
          f'Input shape: {tuple(data["inputs"].shape)} ({origin})\n'
          f'Flops: {_format(complexity.flops)} ({complexity.flops:,} multiply-adds)\n'
          f'  by operator: {by_operator}\n'
          f'  not counted (no FLOP handle): {uncounted or "none"}\n'
          f'Params: {_format(complexity.params)} ({complexity.params:,})\n'
          f'{split_line}')


if __name__ == '__main__':
    main()
