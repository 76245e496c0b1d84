# RKAN-DenseNet-201 on Tiny ImageNet: DenseNet-201 with an RKAN branch on its last dense
# block, reduce factor 1.
_base_ = './densenet-201_8xb16_tiny-imagenet-160px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone={{_base_.model.backbone}},
        stages=(3, ),
        reduce_factor=1))
