"""Generate small shape datasets in the COCO, ADE20K, ImageNet, CIFAR-100, Food-101 and Tiny
ImageNet layouts (deterministic per seed).

    python tools/misc/generate_data.py coco data/shapes_coco --num-train 64 --num-val 16
    python tools/misc/generate_data.py ade20k data/shapes_ade20k
    python tools/misc/generate_data.py imagenet data/shapes_imagenet
    python tools/misc/generate_data.py cifar100 data/shapes_cifar100
    python tools/misc/generate_data.py food101 data/shapes_food101
    python tools/misc/generate_data.py tiny-imagenet data/shapes_tiny-imagenet-200

cifar100 writes the official python pickles; mmpretrain's CIFAR100 dataset checks them against
the official md5 sums, so it reads them only with mmrkan.testing.accept_generated_cifar100.
tiny-imagenet writes the official archive's layout: run tools/dataset_converters/tiny_imagenet.py
on it, as on the real data.
"""
import argparse
import time

from mmrkan.testing import (make_ade20k_style, make_cifar100_style, make_coco_style, make_food101_style,
                            make_imagenet_style, make_tiny_imagenet_style)

MAKERS = {
    'coco': make_coco_style,
    'ade20k': make_ade20k_style,
    'imagenet': make_imagenet_style,
    'cifar100': make_cifar100_style,
    'food101': make_food101_style,
    'tiny-imagenet': make_tiny_imagenet_style,
}
# Per-class image counts, and the formats whose image size is fixed by the layout.
PER_CLASS = {'imagenet': 'num_val_per_class', 'cifar100': 'num_test_per_class', 'food101': 'num_test_per_class',
             'tiny-imagenet': 'num_val_per_class'}
FIXED_SIZE = {'cifar100': '32x32', 'tiny-imagenet': '64x64'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('format', choices=list(MAKERS), help='dataset layout to write')
    parser.add_argument('out', help='output root folder')
    parser.add_argument('--num-train', type=int, default=None,
                        help='training images (per class for the classification layouts)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='validation (test) images (per class for the classification layouts)')
    parser.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'), help='image size')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    for name in ('num_train', 'num_val'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    if args.size is not None and min(args.size) < 32:
        parser.error(f'--size must be at least 32x32, got {args.size}')
    if args.size is not None and args.format in FIXED_SIZE:
        parser.error(f'--size is not allowed with {args.format}: its images are {FIXED_SIZE[args.format]}')
    return args


def main() -> None:
    args = parse_args()
    maker = MAKERS[args.format]
    counts = ('num_train_per_class', PER_CLASS[args.format]) if args.format in PER_CLASS else ('num_train', 'num_val')
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
