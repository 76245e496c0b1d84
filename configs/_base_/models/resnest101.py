# ResNeSt-101 as the RKAN paper counts it (46.31M with 100 classes), ImageNet head (configs set
# num_classes): split-attention bottlenecks (radix 2) at ResNet-101's widths after a 64-channel
# stem. mmpretrain's ResNeSt always uses ResNetV1d's deep stem (three 3x3 convolutions), the
# authors' model ResNet's 7x7 one: 19,232 parameters more here. Plain cross-entropy, no batch
# augments (mmpretrain's resnest101 base has label smoothing and MixUp).
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNeSt',
        depth=101,
        num_stages=4,
        stem_channels=64,
        out_indices=(3, ),
        style='pytorch',
        zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
