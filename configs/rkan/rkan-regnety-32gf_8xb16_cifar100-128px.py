# RKAN-RegNetY-32GF on CIFAR-100: RegNetY-32GF with an RKAN branch on stage 4 (index 3),
# reduce factor 2.
_base_ = './regnety-32gf_8xb16_cifar100-128px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
