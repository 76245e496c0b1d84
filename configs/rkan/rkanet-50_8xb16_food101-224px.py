# RKANet-50 on Food-101: ResNet-50 with an RKAN branch on stage 4, reduce factor 2.
_base_ = './resnet-50_8xb16_food101-224px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
