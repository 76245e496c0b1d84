# SENet-50 (bias-free squeeze-and-excitation, ratio 16) on ImageNet-1k, the baseline of its RKAN
# model: the RKAN paper's recipe, 100 epochs from scratch.
_base_ = [
    '../_base_/models/senet50.py',
    '../_base_/datasets/imagenet_bs32_rkan-randaug-mix.py',
    '../_base_/schedules/imagenet_bs256_rkan-100e.py',
    'mmpretrain::_base_/default_runtime.py',
]
