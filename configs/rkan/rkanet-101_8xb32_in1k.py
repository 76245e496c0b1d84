# RKANet-101: ResNet-101 with an RKAN branch on stage 4, the RKAN paper's ImageNet recipe.
_base_ = './rkanet-50_8xb32_in1k.py'

model = dict(backbone=dict(backbone=dict(depth=101)))
