# RegNetY-8GF on Tiny ImageNet (160x160), the RKAN paper's recipe: 200 epochs from scratch.
_base_ = [
    '../_base_/models/regnety-8gf.py',
    '../_base_/datasets/tiny-imagenet_bs16_rkan-160px.py',
    '../_base_/schedules/rkan_bs128-200e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=200))
