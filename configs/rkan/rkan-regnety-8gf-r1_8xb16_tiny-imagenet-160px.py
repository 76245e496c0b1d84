# RKAN-RegNetY-8GF on Tiny ImageNet: RegNetY-8GF with an RKAN branch on stage 4 (index 3),
# reduce factor 1.
_base_ = './regnety-8gf_8xb16_tiny-imagenet-160px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=1))
