# PyramidNet-101 (Han et al., CVPR 2017) as the RKAN authors build it: the ImageNet layout (7x7
# stem, bottleneck stages of 3, 4, 23, 3 blocks) with alpha 270, final width 4 x 334 = 1336.
# The RKAN paper's CIFAR-100 row (26.59M, 26,589,018 parameters with 100 classes) is this network;
# the configs of other datasets override num_classes.
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='PyramidNet', depth=101, alpha=270, layout='imagenet'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1336,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
