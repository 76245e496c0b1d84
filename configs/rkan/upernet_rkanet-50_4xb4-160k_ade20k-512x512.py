# UperNet with an RKANet-50 backbone on ADE20K, a delta over mmseg's ResNet-50 UperNet. The
# wrapped ResNet-50 has the classifier's plain stem (not ResNetV1c's deep stem) so that the
# ImageNet RKANet-50 checkpoint initialises the whole backbone, RKAN branch included.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
# The ImageNet classifier of configs/rkan/rkanet-50_8xb32_in1k.py.
pretrained = 'work_dirs/rkanet-50_8xb32_in1k/epoch_100.pth'

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 1, 1),
            strides=(1, 2, 2, 2),
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch'),
        stages=(3, ),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
