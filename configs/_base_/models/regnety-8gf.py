# RegNetY-8GF (Radosavovic et al., CVPR 2020), torchvision's regnet_y_8gf layer for layer:
# 39,381,472 parameters with this ImageNet head. The configs of other datasets override num_classes.
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='RegNetY', arch='regnety_8gf', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2016,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
