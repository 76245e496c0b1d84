# Mask R-CNN R-50 FPN with the RKAN paper's COCO recipe (mmdet's 1x Mask R-CNN as the base):
# 12 epochs, SGD lr 0.01 for a batch of 8 (e.g. 4 GPUs x 2 images), weight decay 1e-4, lr x0.1
# after epochs 8 and 11; shorter side 640, random scaling by up to 10%, flip, and the authors'
# colour jitter on 30% of the images; every BatchNorm trained. The configs set the backbone's
# init_cfg to their ImageNet classifier of configs/rkan.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        norm_cfg=dict(type='BN', requires_grad=True),
        # The authors trained every BatchNorm in detection (mmdet's base freezes them).
        norm_eval=False))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=(1333, 640), ratio_range=(0.9, 1.1), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    # The authors' ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1) applied
    # with probability 0.3: factors drawn in [0.8, 1.2] (mmdet rounds them to 0.1); no hue shift
    # (mmdet has no hue transform for uint8 images).
    dict(
        type='RandomApply',
        transforms=[
            dict(type='Brightness', min_mag=0.8, max_mag=1.2),
            dict(type='Contrast', min_mag=0.8, max_mag=1.2),
            dict(type='Color', min_mag=0.8, max_mag=1.2),
        ],
        prob=0.3),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 640), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9, weight_decay=1e-4))
auto_scale_lr = dict(base_batch_size=8)
