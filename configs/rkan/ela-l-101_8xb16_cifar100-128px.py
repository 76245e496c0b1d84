# ELA-L-101 on CIFAR-100 (128x128), the RKAN paper's recipe: 200 epochs from scratch.
# 44,590,756 parameters; the paper prints 44.53M, its count without the 65,024 GroupNorm
# parameters of the ELA modules (the authors' profiler skips GroupNorm; docs/models.md).
_base_ = [
    '../_base_/models/ela-l-resnet50.py',
    '../_base_/datasets/cifar100_bs16_rkan-128px.py',
    '../_base_/schedules/rkan_bs128-200e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(backbone=dict(depth=101), head=dict(num_classes=100))
