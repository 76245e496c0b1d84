# RKANet-50 RKAN-L x4: the stage-4 branch is an inverse bottleneck 1024 -> 4096 -> 2048.
_base_ = './rkanet-50_8xb32_in1k.py'

model = dict(backbone=dict(expansion=4))
