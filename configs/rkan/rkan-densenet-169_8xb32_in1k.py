# RKAN-DenseNet-169 on ImageNet-1k: DenseNet-169 with an RKAN branch on its last dense
# block, reduce factor 2.
_base_ = './densenet-169_8xb32_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=2))
