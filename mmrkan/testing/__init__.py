from .classification_data import (TINY_IMAGENET_WNIDS, accept_generated_cifar100, make_cifar100_style,
                                  make_food101_style, make_tiny_imagenet_style)
from .synthetic_data import (SHAPE_CLASSES, make_ade20k_style, make_coco_style,
                             make_imagenet_style)

__all__ = ['SHAPE_CLASSES', 'make_coco_style', 'make_ade20k_style', 'make_imagenet_style', 'make_cifar100_style',
           'make_food101_style', 'make_tiny_imagenet_style', 'accept_generated_cifar100', 'TINY_IMAGENET_WNIDS']
