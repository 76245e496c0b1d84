# RKANet-101-4xL on CIFAR-100: the stage-4 branch is an inverse bottleneck 1024 -> 4096 -> 2048
# (RKAN-L, expansion 4).
_base_ = './rkanet-101_8xb16_cifar100-128px.py'

model = dict(backbone=dict(expansion=4))
