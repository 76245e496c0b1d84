# RKAN-SimAM-50 on ImageNet-1k: SimAM-50 with an RKAN branch on stage 4 (index 3), reduce factor 2.
_base_ = './simam-50_8xb32_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
