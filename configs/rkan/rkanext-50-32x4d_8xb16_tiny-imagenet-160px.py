# RKANeXt-50 (32x4d) on Tiny ImageNet: ResNeXt-50 with an RKAN branch on stage 4,
# reduce factor 2.
_base_ = './resnext-50-32x4d_8xb16_tiny-imagenet-160px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
