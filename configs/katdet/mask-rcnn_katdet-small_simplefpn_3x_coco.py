# KATDet-S Mask R-CNN, 3x schedule. The backbone checkpoint comes from the official KAT-S weights:
#   python tools/model_converters/kat_timm2mmrkan.py kat_small_patch16_224.pth \
#       pretrain/kat-small_in1k-detection.pth --task detection
_base_ = '../_base_/mask-rcnn_katdet_simplefpn_3x_coco.py'

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(
            type='Pretrained', checkpoint='pretrain/kat-small_in1k-detection.pth')),
    neck=dict(in_channels=384))
