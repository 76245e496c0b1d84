# RKAN-ELA-L-50 on ImageNet-1k: ELA-L-50 with an RKAN branch on stage 4 (index 3), reduce factor 2.
# 28,011,147 parameters; the paper prints 27.98M, its count without the 30,208 GroupNorm
# parameters of the ELA modules (docs/models.md).
_base_ = './ela-l-50_8xb32_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
