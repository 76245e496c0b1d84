# Food-101 as the RKAN paper trains on it: random resized crops of 224x224, flip, RandAugment,
# and as batch augments MixUp (alpha 0.2) with probability 0.3 or CutMix with probability 0.5;
# evaluated on the short side resized to 280 and a centre crop of 224 (the authors' 1.25 ratio).
# mmpretrain's stock Food101 dataset reads the official food-101 folder (images/, meta/); the
# test split is the validation set.
_base_ = './torchvision-randaugment-m9.py'

dataset_type = 'Food101'
data_root = 'data/food-101'
data_preprocessor = dict(
    num_classes=101,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    batch_augments=dict(
        augments=[dict(type='Mixup', alpha=0.2),
                  dict(type='CutMix', alpha=1.0)],
        probs=[0.3, 0.5]))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=280, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
