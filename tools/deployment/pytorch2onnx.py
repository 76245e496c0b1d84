"""Export a classifier, a segmentor or a detector's backbone + neck to ONNX, checked with
onnxruntime.

The graph takes the normalised image ``(N, 3, H, W)`` (mean/std and channel order of the
config's data preprocessor applied beforehand) at the static ``--shape``, and returns:
classifiers ``logits`` (before softmax); segmentors ``seg_logits`` at the input size;
detectors the neck's feature maps ``feat0 ..`` (the rest of a detector is mmdeploy's).
The KAN ops become standard ONNX operators. After the export, onnxruntime runs the file on a
random input and the max absolute difference to PyTorch is printed; over ``--tolerance`` the
tool fails with exit status 1.

Examples::

    python tools/deployment/pytorch2onnx.py configs/kat/kat-small_8xb128_in1k.py \\
        work_dirs/kat-small_8xb128_in1k/epoch_300.pth --shape 224 224 --out kat-small.onnx
    python tools/deployment/pytorch2onnx.py \\
        configs/rkan/mask-rcnn_rkanet-50_fpn_1x_coco.py CKPT --shape 800 1344 --out rkan-fpn.onnx \\
        --dynamo
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import tempfile
import warnings

import torch
from mmengine.config import DictAction

from mmrkan.apis import ToolError, exit_on_user_error, load_config
from mmrkan.deployment import (DEFAULT_OPSETS, build_exportable_model, export_onnx, export_shape,
                               non_standard_ops, onnxruntime_differences)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export an mmrkan model to ONNX and check it against PyTorch with onnxruntime')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file; without one the initial weights are exported '
                        '(to try the export)')
    parser.add_argument(
        '--shape', type=int, nargs='+', metavar=('H', 'W'),
        help='input height and width (one value: square); default: 224x224 for classifiers, '
        '512x512 for segmentors, 800x1344 for detectors')
    parser.add_argument('--out', help='output ONNX file; default: <config name>.onnx')
    parser.add_argument('--dynamo', action='store_true',
                        help='use the torch.export-based exporter (torch.onnx.export(dynamo=True), '
                        'needs onnxscript) instead of the TorchScript-based one')
    parser.add_argument('--opset', type=int,
                        help=f'ONNX opset; default: {DEFAULT_OPSETS["torchscript"]} '
                        f'(TorchScript exporter), {DEFAULT_OPSETS["dynamo"]} (--dynamo)')
    parser.add_argument('--device', default='cpu', help='device to export on, e.g. cpu, cuda:0')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest max absolute difference onnxruntime vs PyTorch accepted')
    parser.add_argument('--skip-check', action='store_true',
                        help='export without the onnxruntime check')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. model.backbone.arch=tiny')
    return parser.parse_args()


def _check_packages(dynamo: bool, check: bool) -> None:
    needed = ['onnx'] + (['onnxscript'] if dynamo else []) + (['onnxruntime'] if check else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ToolError(f'the export needs {", ".join(missing)}: pip install {" ".join(missing)}')


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ToolError(f'--device {name!r} is not a device; e.g. cpu, cuda, cuda:0') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ToolError(f'--device {name}: CUDA is not available on this machine')
    return device


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    shape = export_shape(cfg, args.shape)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise ToolError(f'checkpoint {args.checkpoint!r} does not exist')
    if args.tolerance < 0:
        raise ToolError(f'--tolerance {args.tolerance}: must be >= 0')
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    if osp.isdir(out):
        raise ToolError(f'--out {out!r} is a directory; give a file name')
    _check_packages(args.dynamo, not args.skip_check)
    device = _device(args.device)
    exporter = 'dynamo' if args.dynamo else 'torchscript'
    opset = args.opset or DEFAULT_OPSETS[exporter]

    # The export is static (fixed --shape): the tracer's warnings that shapes become constants
    # say what is intended.
    warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
    module = build_exportable_model(cfg, shape, args.checkpoint, device)
    if args.checkpoint is None:
        print('no checkpoint given: exporting the initial (untrained) weights')
    inputs = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    # Written beside the target and moved there once complete: a failed export leaves an
    # existing file untouched.
    handle, partial = tempfile.mkstemp(suffix='.onnx', dir=out_dir)
    os.close(handle)
    try:
        names = export_onnx(module, inputs, partial, opset, args.dynamo)
        os.replace(partial, out)
    finally:
        if osp.exists(partial):
            os.remove(partial)
    custom_ops = non_standard_ops(out)
    if custom_ops:
        raise ToolError(f'{out} holds operators outside the standard ONNX domain: {custom_ops}')
    input_shape = 'x'.join(map(str, inputs.shape))
    print(f'exported {type(module).__name__} of {args.config}, input {input_shape}, outputs '
          f'{", ".join(names)}, with the {exporter} exporter (opset {opset}) to {out}')
    if args.skip_check:
        return
    differences = onnxruntime_differences(out, module, inputs)
    worst = max(differences.values())
    listed = ', '.join(f'{name} {value:.3g}' for name, value in differences.items())
    print(f'onnxruntime vs PyTorch, max abs difference: {worst:.3g} ({listed}); '
          f'tolerance {args.tolerance:g}')
    if worst > args.tolerance:
        print(f'error: {out} differs from PyTorch by {worst:.3g} > --tolerance {args.tolerance:g} '
              '(the file is kept for inspection)', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
