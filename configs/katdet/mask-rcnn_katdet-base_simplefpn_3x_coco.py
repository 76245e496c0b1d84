# KATDet-B Mask R-CNN, 3x schedule. The backbone checkpoint comes from the official KAT-B weights:
#   python tools/model_converters/kat_timm2mmrkan.py kat_base_patch16_224.pth \
#       pretrain/kat-base_in1k-detection.pth --task detection
_base_ = '../_base_/mask-rcnn_katdet_simplefpn_3x_coco.py'

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(
            type='Pretrained', checkpoint='pretrain/kat-base_in1k-detection.pth')),
    neck=dict(in_channels=768))
