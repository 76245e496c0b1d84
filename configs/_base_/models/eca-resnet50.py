# ECA-Net-50: ResNet-50 with efficient channel attention after the last norm of every block.
# ImageNet head; the configs of other datasets override num_classes (and depth=101 for the
# 101-layer rows). mmpretrain's ResNet has no plug-ins: mmdet's ResNet (the same network and
# parameter names) carries the attention modules.
# Adaptive kernel size (5, 5, 5, 7 in the four stages). 25,557,118 parameters (25.56M).
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmdet.ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        # mmdet's defaults are for detection fine-tuning: train every norm.
        norm_eval=False,
        # The RKAN authors' models are torchvision ResNets: no zero-initialised last norm.
        zero_init_residual=False,
        plugins=[
            dict(
                cfg=dict(type='EfficientChannelAttention'),
                stages=(True, True, True, True),
                position='after_conv3'),
        ]),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
