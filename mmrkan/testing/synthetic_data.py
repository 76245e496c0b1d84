"""Small datasets of simple shapes, written in the real COCO, ADE20K and ImageNet layouts.

Everything is drawn deterministically from a seed, so the demo and the tests read the same files
through the stock mmdet / mmseg / mmpretrain dataset classes, exactly as real data would be read.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ('square', 'circle', 'triangle')
_SPLITS = {'train': 'train2017', 'val': 'val2017'}


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> List[Tuple[float, float]]:
    """Vertices of a shape of circumradius ``r`` centred at (cx, cy)."""
    sides = {'square': 4, 'circle': 24, 'triangle': 3}[shape]
    return [(cx + r * math.cos(angle + 2 * math.pi * k / sides),
             cy + r * math.sin(angle + 2 * math.pi * k / sides)) for k in range(sides)]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random gradient with noise, so the shapes are not on a flat colour."""
    base = rng.uniform(0, 120, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    ys, xs = np.mgrid[0:height, 0:width]
    img = (base + ys[..., None] / height * slope[0] + xs[..., None] / width * slope[1]
           + rng.normal(0, 8, size=(height, width, 3)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_scene(rng: np.random.Generator, height: int, width: int,
                max_shapes: int) -> Tuple[Image.Image, List[Dict]]:
    """An image with 1..max_shapes non-overlapping-centre shapes, and each shape's polygon."""
    image = Image.fromarray(_background(rng, height, width))
    draw = ImageDraw.Draw(image)
    shapes: List[Dict] = []
    min_side = min(height, width)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        r = float(rng.uniform(0.12, 0.28) * min_side)
        cx = float(rng.uniform(r, width - r))
        cy = float(rng.uniform(r, height - r))
        if any(math.hypot(cx - s['cx'], cy - s['cy']) < r + s['r'] for s in shapes):
            continue  # keep objects separate so every mask is fully visible
        polygon = _polygon(SHAPE_CLASSES[label], cx, cy, r, float(rng.uniform(0, math.pi)))
        colour = tuple(int(c) for c in rng.integers(140, 256, size=3))
        draw.polygon(polygon, fill=colour)
        shapes.append(dict(label=label, cx=cx, cy=cy, r=r, polygon=polygon))
    return image, shapes


def draw_single_shape(rng: np.random.Generator, shape: str, height: int, width: int) -> Image.Image:
    """An image holding one large ``shape`` (one of ``SHAPE_CLASSES``) on a noisy gradient."""
    image = Image.fromarray(_background(rng, height, width))
    r = float(rng.uniform(0.25, 0.4) * min(height, width))
    cx = float(rng.uniform(r, width - r))
    cy = float(rng.uniform(r, height - r))
    polygon = _polygon(shape, cx, cy, r, float(rng.uniform(0, math.pi)))
    ImageDraw.Draw(image).polygon(polygon, fill=tuple(int(c) for c in rng.integers(140, 256, size=3)))
    return image


def make_coco_style(root: str, num_train: int = 64, num_val: int = 16, image_size: Tuple[int, int] = (128, 128),
                    max_shapes: int = 3, seed: int = 0) -> str:
    """Write ``root/{train2017,val2017}/*.jpg`` and ``root/annotations/instances_*2017.json``.

    Categories are ``SHAPE_CLASSES`` (ids 1..3); masks are polygons. Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(SHAPE_CLASSES)]
    for split, num in (('train', num_train), ('val', num_val)):
        image_dir = osp.join(root, _SPLITS[split])
        os.makedirs(image_dir, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, num + 1):
            image, shapes = _draw_scene(rng, height, width, max_shapes)
            file_name = f'{image_id:012d}.jpg'
            image.save(osp.join(image_dir, file_name), quality=95)
            images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
            for shape in shapes:
                xs = [min(max(x, 0.0), width) for x, _ in shape['polygon']]
                ys = [min(max(y, 0.0), height) for _, y in shape['polygon']]
                area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id,
                    category_id=shape['label'] + 1, iscrowd=0, area=area,
                    bbox=[min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    segmentation=[[round(v, 2) for xy in zip(xs, ys) for v in xy]]))
        with open(osp.join(root, 'annotations', f'instances_{_SPLITS[split]}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return root


def make_ade20k_style(root: str, num_train: int = 32, num_val: int = 8, image_size: Tuple[int, int] = (128, 128),
                      max_shapes: int = 3, seed: int = 0) -> str:
    """Write ``root/images/{training,validation}/*.jpg`` and ``root/annotations/.../*.png``.

    Label maps follow ADE20K: 0 is "other" (ignored with ``reduce_zero_label``), the shapes are
    1..3, so after the reduction they are classes 0..2. Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    for split, num in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for index in range(num):
            image, shapes = _draw_scene(rng, height, width, max_shapes)
            label_map = Image.new('L', (width, height), 0)
            draw = ImageDraw.Draw(label_map)
            for shape in shapes:
                draw.polygon(shape['polygon'], fill=shape['label'] + 1)
            name = f'ADE_{split[:5]}_{index:08d}'
            image.save(osp.join(root, 'images', split, name + '.jpg'), quality=95)
            label_map.save(osp.join(root, 'annotations', split, name + '.png'))
    return root


def make_imagenet_style(root: str, num_train_per_class: int = 16, num_val_per_class: int = 4,
                        image_size: Tuple[int, int] = (64, 64), seed: int = 0) -> str:
    """Write ``root/{train,val}/<class>/*.JPEG`` plus ``root/meta/{train,val}.txt`` annotation lists.

    Each image holds one shape; its class is the shape (``SHAPE_CLASSES``). Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split, per_class in (('train', num_train_per_class), ('val', num_val_per_class)):
        lines = []
        for label, name in enumerate(SHAPE_CLASSES):
            os.makedirs(osp.join(root, split, name), exist_ok=True)
            for index in range(per_class):
                image = draw_single_shape(rng, name, height, width)
                rel_path = f'{name}/{name}_{index:05d}.JPEG'
                image.save(osp.join(root, split, rel_path), quality=95)
                lines.append(f'{rel_path} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return root
