# ImageNet with the RKAN paper's augmentation: RandAugment on top of mmpretrain's ImageNet
# pipeline (CutMix/MixUp are batch augments: see the model's train_cfg in configs/rkan).
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs32.py'

# RandAugment fills with the BGR mean (images are still BGR when the pipeline runs).
bgr_mean = [103.53, 116.28, 123.675]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # timm's rand-m9-mstd0.5-inc1.
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean])),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
