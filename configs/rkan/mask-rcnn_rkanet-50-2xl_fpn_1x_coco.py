# Mask R-CNN with an RKANet-50-2xL FPN (RKAN-L branch, expansion 2, on stage 4), the RKAN paper's
# COCO recipe; the whole backbone, branch included, from the ImageNet classifier of
# configs/rkan/rkanet-50-2xl_8xb32_in1k.py.
_base_ = '../_base_/mask-rcnn_r50_fpn_1x_coco-640.py'

pretrained = 'work_dirs/rkanet-50-2xl_8xb32_in1k/epoch_100.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        expansion=2,
        norm_cfg=dict(type='BN', requires_grad=True),
        branch_norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
