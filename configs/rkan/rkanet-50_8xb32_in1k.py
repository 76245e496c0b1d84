# RKANet-50: ResNet-50 with an RKAN branch on stage 4 (index 3), the RKAN paper's ImageNet recipe.
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    '../_base_/datasets/imagenet_bs32_rkan-randaug.py',
    '../_base_/schedules/imagenet_bs256_rkan-100e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(3, ),
            style='pytorch',
            # The authors train torchvision's ResNet, which does not zero the last norm of each
            # residual block (mmpretrain's ResNet does by default).
            zero_init_residual=False),
        stages=(3, ),
        reduce_factor=2,
        degrees=(3, 2),
        basis='chebyshev',
        aggregation='addition'),
    head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True)),
    # MixUp (alpha 0.2) with probability 0.3, CutMix with probability 0.5, none otherwise.
    train_cfg=dict(
        augments=[dict(type='Mixup', alpha=0.2),
                  dict(type='CutMix', alpha=1.0)],
        probs=[0.3, 0.5]),
)
