# RKANet-50 "E": RKAN branches on stages 3 and 4 (indices 2 and 3; the second KAN convolution
# only on stage 4).
_base_ = './rkanet-50_8xb32_in1k.py'

model = dict(backbone=dict(stages=(2, 3)))
