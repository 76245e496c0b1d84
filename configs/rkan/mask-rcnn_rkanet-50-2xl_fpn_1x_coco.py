# Mask R-CNN with an RKANet-50-2xL FPN (RKAN-L branch, expansion 2, on stage 4), the RKAN paper's
# COCO recipe; the whole backbone, branch included, from the ImageNet classifier of
# configs/rkan/rkanet-50-2xl_8xb32_in1k.py.
_base_ = './mask-rcnn_rkanet-50_fpn_1x_coco.py'

pretrained = 'work_dirs/rkanet-50-2xl_8xb32_in1k/epoch_100.pth'
model = dict(backbone=dict(expansion=2, init_cfg=dict(checkpoint=pretrained)))
