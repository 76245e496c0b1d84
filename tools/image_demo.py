"""Predict on one image with a config of any of the three tasks and write the drawn prediction.

The task follows the config's ``default_scope``; the prediction is made by the task library's
stock inferencer (mmdet's ``DetInferencer``, mmseg's ``MMSegInferencer``, mmpretrain's
``ImageClassificationInferencer``), which load mmrkan through the config's ``custom_imports``:

    python tools/image_demo.py demo.jpg configs/rkan/mask-rcnn_rkanet-50_fpn_1x_coco.py CKPT
    python tools/image_demo.py demo.jpg configs/kat/upernet_kat-small_8xb2-160k_ade20k-512x512.py CKPT
    python tools/image_demo.py demo.jpg configs/kat/kat-small_8xb128_in1k.py CKPT --out-file kat.png

Without CHECKPOINT the model keeps its random initialisation (a check that the pipeline runs; the
picture then means nothing) and the class names are the library's defaults.
"""
import argparse
import os
import os.path as osp
import tempfile

import mmcv
import numpy as np
import torch
from mmengine.config import DictAction

from mmrkan.apis import ToolError, build_model_for_checks, check_checkpoint_fits, exit_on_user_error, load_config
from mmrkan.apis.checkpoint_fit import ignore_patterns

IMAGE_FORMATS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file of a detector, segmentor or classifier')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file; default: random weights')
    parser.add_argument('--out-file', help='where to write the drawn prediction; default: '
                        'outputs/<image name>_<config name>.png')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
                        help='device to run on, e.g. cpu or cuda:0 (default: cuda:0 if there is a GPU)')
    parser.add_argument('--score-thr', type=float,
                        help='detection only: draw boxes scoring at least this (default 0.3)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    return parser.parse_args()


def predict_and_draw(image: str, config: str, checkpoint: str, device: str, score_thr: float,
                     cfg_options: dict) -> np.ndarray:
    """The prediction drawn over ``image`` by the config's task inferencer, as an RGB array."""
    cfg = load_config(config, cfg_options)
    scope = cfg.default_scope
    if score_thr is not None and scope != 'mmdet':
        raise ToolError(f'--score-thr is for detectors; {config} is a {scope} config')
    if checkpoint is not None:  # the inferencers load any checkpoint with strict=False
        check_checkpoint_fits(build_model_for_checks(cfg), checkpoint, ignore_patterns(cfg))
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=cfg, weights=checkpoint, device=device, show_progress=False)
        result = inferencer(image, return_vis=True, no_save_vis=True,
                            pred_score_thr=0.3 if score_thr is None else score_thr)
        return result['visualization'][0]
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=checkpoint, device=device)
        return inferencer(image, return_vis=True)['visualization']
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(model=cfg, pretrained=checkpoint or False, device=device)
    # The classification inferencer draws only when it saves or shows; keep the drawn image.
    with tempfile.TemporaryDirectory() as scratch:
        inferencer(image, show_dir=scratch)
    return inferencer.visualizer.get_image()


@exit_on_user_error
def main() -> None:
    args = parse_args()
    if not osp.isfile(args.image):
        raise ToolError(f'image {args.image!r} does not exist')
    if mmcv.imread(args.image) is None:
        raise ToolError(f'image {args.image!r} is not an image file OpenCV can read')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise ToolError(f'checkpoint {args.checkpoint!r} does not exist')
    out_file = args.out_file or osp.join('outputs', '_'.join(
        osp.splitext(osp.basename(path))[0] for path in (args.image, args.config)) + '.png')
    if osp.splitext(out_file)[1].lower() not in IMAGE_FORMATS:
        raise ToolError(f'--out-file {out_file!r}: the extension must be one of {", ".join(IMAGE_FORMATS)}')
    drawn = predict_and_draw(args.image, args.config, args.checkpoint, args.device, args.score_thr,
                             args.cfg_options)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    if not mmcv.imwrite(np.ascontiguousarray(drawn[..., ::-1]), out_file):
        raise ToolError(f'could not write {out_file!r}')
    print(f'prediction drawn in {out_file}')


if __name__ == '__main__':
    main()
