from .synthetic_data import (SHAPE_CLASSES, make_ade20k_style, make_coco_style,
                             make_imagenet_style)

__all__ = ['SHAPE_CLASSES', 'make_coco_style', 'make_ade20k_style', 'make_imagenet_style']
