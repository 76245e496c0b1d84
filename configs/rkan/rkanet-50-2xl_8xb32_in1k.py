# RKANet-50-2xL: the stage-4 branch is an inverse bottleneck 1024 -> 2048 -> 2048 (RKAN-L,
# expansion 2).
_base_ = './rkanet-50_8xb32_in1k.py'

model = dict(backbone=dict(expansion=2))
