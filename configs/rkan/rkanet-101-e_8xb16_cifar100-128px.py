# RKANet-E-101 on CIFAR-100: RKAN branches on stages 3 and 4 (indices 2 and 3; the
# second KAN convolution only on stage 4).
_base_ = './rkanet-101_8xb16_cifar100-128px.py'

model = dict(backbone=dict(stages=(2, 3)))
