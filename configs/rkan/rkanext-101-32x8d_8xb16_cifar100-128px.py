# RKANeXt-101 (32x8d) on CIFAR-100: ResNeXt-101 with an RKAN branch on stage 4, reduce factor 2.
_base_ = './resnext-101-32x8d_8xb16_cifar100-128px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
