# ELA-L-50 on ImageNet-1k, the baseline of its RKAN model: the RKAN paper's recipe, 100 epochs
# from scratch. 26,433,064 parameters; the paper prints 26.40M, its count without the 30,208
# GroupNorm parameters of the ELA modules (the authors' profiler skips GroupNorm; docs/models.md).
_base_ = [
    '../_base_/models/ela-l-resnet50.py',
    '../_base_/datasets/imagenet_bs32_rkan-randaug-mix.py',
    '../_base_/schedules/imagenet_bs256_rkan-100e.py',
    'mmpretrain::_base_/default_runtime.py',
]
