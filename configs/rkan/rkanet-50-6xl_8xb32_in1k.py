# RKANet-50-6xL: the stage-4 branch is an inverse bottleneck 1024 -> 6144 -> 2048 (RKAN-L,
# expansion 6).
_base_ = './rkanet-50_8xb32_in1k.py'

model = dict(backbone=dict(expansion=6))
