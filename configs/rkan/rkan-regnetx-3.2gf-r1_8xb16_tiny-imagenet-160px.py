# RKAN-RegNetX-3.2GF on Tiny ImageNet: RegNetX-3.2GF with an RKAN branch on stage 4,
# reduce factor 1.
_base_ = './regnetx-3.2gf_8xb16_tiny-imagenet-160px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=1))
