# RKANet-34 on Tiny ImageNet: ResNet-34 with an RKAN branch on stage 4, reduce factor 1.
_base_ = './resnet-34_8xb16_tiny-imagenet-160px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=1))
