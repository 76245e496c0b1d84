# ResNet-50 on Food-101 (224x224), the RKAN paper's recipe: 200 epochs from scratch.
_base_ = [
    '../_base_/models/resnet50.py',
    '../_base_/datasets/food101_bs16_rkan-224px.py',
    '../_base_/schedules/rkan_bs128-200e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=101))
