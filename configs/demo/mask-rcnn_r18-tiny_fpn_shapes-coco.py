# A small Mask R-CNN that trains on the CPU in a few minutes on the generated shapes data.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/shapes-coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64, num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=12, milestones=[9, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=12, max_keep_ckpts=1))
# Seeded: the same command on the same machine repeats the metrics. On the CPU the seed is enough;
# deterministic=True would make torch refuse CUDA ops that lack a deterministic kernel (e.g. the
# backward of bilinear upsampling).
randomness = dict(seed=0, deterministic=False)
