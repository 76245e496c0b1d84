# RKANet-101-6xL on CIFAR-100: the stage-4 branch is an inverse bottleneck 1024 -> 6144 -> 2048
# (RKAN-L, expansion 6).
_base_ = './rkanet-101_8xb16_cifar100-128px.py'

model = dict(backbone=dict(expansion=6))
