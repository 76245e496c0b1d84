# SENet-50: ResNet-50 with bias-free squeeze-and-excitation (ratio 16) after the last norm of every
# block, as the RKAN authors' SENet.
# ImageNet head; the configs of other datasets override num_classes (and depth=101 for the
# 101-layer rows). mmpretrain's ResNet has no plug-ins: mmdet's ResNet (the same network and
# parameter names) carries the attention modules.
# 28,071,976 parameters (28.07M); mmpretrain's SEResNet-50, with SE biases, has 16,048 more.
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
                cfg=dict(type='SqueezeExcitation', ratio=16, bias=False),
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
