# CIFAR-100 as the RKAN paper trains on it: the 32x32 images resized to 128x128 (bicubic), flip,
# RandAugment, and as batch augments MixUp (alpha 0.2) with probability 0.3 or CutMix with
# probability 0.5. mmpretrain's stock CIFAR100 dataset reads the official python release
# (data/cifar100/cifar-100-python/{train,test,meta}); the test split is the validation set.
_base_ = './torchvision-randaugment-m9.py'

dataset_type = 'CIFAR100'
data_preprocessor = dict(
    num_classes=100,
    # The authors' CIFAR-100 statistics; the images are RGB arrays already.
    mean=[x * 255 for x in (0.5071, 0.4867, 0.4408)],
    std=[x * 255 for x in (0.2675, 0.2565, 0.2761)],
    to_rgb=False,
    batch_augments=dict(
        augments=[dict(type='Mixup', alpha=0.2),
                  dict(type='CutMix', alpha=1.0)],
        probs=[0.3, 0.5]))

train_pipeline = [
    dict(type='Resize', scale=128, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=128, interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root='data/cifar100',
        split='train',
        download=False,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root='data/cifar100',
        split='test',
        download=False,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
