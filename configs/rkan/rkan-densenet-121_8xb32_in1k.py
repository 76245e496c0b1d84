# RKAN-DenseNet-121 on ImageNet-1k: DenseNet-121 with an RKAN branch on its last dense
# block, reduce factor 2.
_base_ = './densenet-121_8xb32_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
