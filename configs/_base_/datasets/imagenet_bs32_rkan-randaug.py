# ImageNet with the RKAN paper's augmentation, as the authors' code applies it: random resized
# crop of 224, flip, then torchvision's RandAugment(num_ops=2, magnitude=9), the one of the
# CIFAR-100, Tiny ImageNet and Food-101 recipes (CutMix/MixUp are batch augments: see the
# model's train_cfg in configs/rkan, or imagenet_bs32_rkan-randaug-mix.py). Evaluation: short
# side 256, centre crop 224 (mmpretrain's base, the authors' too).
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs32.py', './torchvision-randaugment-m9.py']

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
