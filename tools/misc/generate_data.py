"""Generate small shape datasets in the COCO, ADE20K and ImageNet layouts (deterministic per seed).

    python tools/misc/generate_data.py coco data/shapes_coco --num-train 64 --num-val 16
    python tools/misc/generate_data.py ade20k data/shapes_ade20k
    python tools/misc/generate_data.py imagenet data/shapes_imagenet
"""
import argparse
import time

from mmrkan.testing import make_ade20k_style, make_coco_style, make_imagenet_style


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('format', choices=['coco', 'ade20k', 'imagenet'], help='dataset layout to write')
    parser.add_argument('out', help='output root folder')
    parser.add_argument('--num-train', type=int, default=None,
                        help='training images (per class for imagenet)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='validation images (per class for imagenet)')
    parser.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'), help='image size')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    for name in ('num_train', 'num_val'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    if args.size is not None and min(args.size) < 32:
        parser.error(f'--size must be at least 32x32, got {args.size}')
    return args


def main() -> None:
    args = parse_args()
    maker = dict(coco=make_coco_style, ade20k=make_ade20k_style, imagenet=make_imagenet_style)[args.format]
    counts = ('num_train_per_class', 'num_val_per_class') if args.format == 'imagenet' else ('num_train', 'num_val')
    kwargs = dict(seed=args.seed)
    for key, value in zip(counts, (args.num_train, args.num_val)):
        if value is not None:
            kwargs[key] = value
    if args.size is not None:
        kwargs['image_size'] = tuple(args.size)
    start = time.time()
    maker(args.out, **kwargs)
    print(f'wrote a {args.format}-style dataset to {args.out} in {time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
