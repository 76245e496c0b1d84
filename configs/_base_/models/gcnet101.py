# GCNet-101: ResNet-101 with a global context block (mmcv's ContextBlock, channel ratio 1/16)
# after the last convolution of every bottleneck of stages 2-4, through mmdet's ResNet plug-ins;
# ImageNet head (configs set num_classes). mmcv's block has biases on its three convolutions,
# the RKAN authors' none: 33,758 parameters more than the paper's GCNet-101.
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmdet.ResNet',
        depth=101,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        # mmdet's ResNet defaults to frozen BN statistics (for detection); here it is trained.
        norm_eval=False,
        zero_init_residual=False,
        plugins=[
            dict(
                cfg=dict(type='ContextBlock', ratio=1. / 16),
                stages=(False, True, True, True),
                position='after_conv3')
        ]),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
