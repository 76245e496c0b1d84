# Tiny ImageNet as the RKAN paper trains on it: the 64x64 images upscaled x2.5 to 160x160
# (bicubic), flip, RandAugment, and as batch augments MixUp (alpha 0.2) with probability 0.3 or
# CutMix with probability 0.5. Read with mmpretrain's CustomDataset from the annotation lists
# that tools/dataset_converters/tiny_imagenet.py writes into the official tiny-imagenet-200
# folder (meta/train.txt, meta/val.txt: label i is the i-th wnid in sorted order); the labelled
# validation split is the validation set.
_base_ = './torchvision-randaugment-m9.py'

dataset_type = 'CustomDataset'
data_root = 'data/tiny-imagenet-200'
data_preprocessor = dict(
    num_classes=200,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    batch_augments=dict(
        augments=[dict(type='Mixup', alpha=0.2),
                  dict(type='CutMix', alpha=1.0)],
        probs=[0.3, 0.5]))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=160, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=160, interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
