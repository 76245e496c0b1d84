# Mask R-CNN with an RKANet-50 backbone, the RKAN paper's COCO recipe: 12 epochs, SGD lr 0.01
# for a batch of 8 (e.g. 4 GPUs x 2 images), weight decay 1e-4, lr x0.1 after epochs 8 and 11,
# shorter side 640, random flip.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

# The ImageNet classifier of configs/rkan/rkanet-50_8xb32_in1k.py: its whole backbone, RKAN
# branch included, has the layout of this one.
pretrained = 'work_dirs/rkanet-50_8xb32_in1k/epoch_100.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            # The authors trained every BatchNorm in detection.
            norm_eval=False,
            style='pytorch'),
        stages=(3, ),
        norm_cfg=dict(type='BN', requires_grad=True),
        # The branch BatchNorm statistics train too (the default follows norm_eval above).
        branch_norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 640), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
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
