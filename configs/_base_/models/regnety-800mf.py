# RegNetY-800MF (Radosavovic et al., CVPR 2020), torchvision's regnet_y_800mf layer for layer:
# 6,432,512 parameters with this ImageNet head. The configs of other datasets override num_classes.
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='RegNetY', arch='regnety_800mf', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=784,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
