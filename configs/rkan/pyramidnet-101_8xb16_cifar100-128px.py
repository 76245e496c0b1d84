# PyramidNet-101 on CIFAR-100 (128x128), the RKAN paper's recipe: 200 epochs from scratch. The
# ImageNet layout with alpha 270, as the RKAN authors build it (see docs/models.md).
_base_ = [
    '../_base_/models/pyramidnet-101.py',
    '../_base_/datasets/cifar100_bs16_rkan-128px.py',
    '../_base_/schedules/rkan_bs128-200e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=100))
