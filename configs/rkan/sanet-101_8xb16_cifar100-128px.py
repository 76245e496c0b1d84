# SA-Net-101 (shuffle attention, 64 groups) on CIFAR-100 (128x128), the RKAN paper's recipe:
# 200 epochs from scratch.
_base_ = [
    '../_base_/models/sa-resnet50.py',
    '../_base_/datasets/cifar100_bs16_rkan-128px.py',
    '../_base_/schedules/rkan_bs128-200e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(backbone=dict(depth=101), head=dict(num_classes=100))
