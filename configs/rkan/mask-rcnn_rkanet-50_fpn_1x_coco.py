# Mask R-CNN with an RKANet-50 FPN, the RKAN paper's COCO recipe; the whole backbone, RKAN branch
# included, from the ImageNet classifier of configs/rkan/rkanet-50_8xb32_in1k.py.
_base_ = '../_base_/mask-rcnn_r50_fpn_1x_coco-640.py'

pretrained = 'work_dirs/rkanet-50_8xb32_in1k/epoch_100.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        # The base's ResNet-50 without its torchvision init_cfg: the checkpoint below initialises
        # the whole backbone.
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
        # The branch's BatchNorms are trained too.
        norm_cfg=dict(type='BN', requires_grad=True),
        # The branch BatchNorm statistics train too (the default follows norm_eval above).
        branch_norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
