# Mask R-CNN with a ResNet-50 FPN, the RKAN paper's COCO baseline and recipe, its backbone from the
# ImageNet ResNet-50 of configs/rkan/resnet-50_8xb32_in1k.py.
_base_ = '../_base_/mask-rcnn_r50_fpn_1x_coco-640.py'

pretrained = 'work_dirs/resnet-50_8xb32_in1k/epoch_100.pth'
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
