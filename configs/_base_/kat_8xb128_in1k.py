# KAT on ImageNet-1k from scratch, the DeiT-style recipe of the KAT paper (docs/recipes.md):
# 300 epochs, batch 1024 (8 GPUs x 128), AdamW lr 1e-3 and weight decay 0.05, 5 warm-up epochs
# then cosine, RandAugment m9, mixup 0.8, cutmix 1.0, label smoothing 0.1, random erasing 0.25,
# EMA 0.9999. The rational coefficients are 2-D and get weight decay, as in the authors' runs.
# The configs/kat/kat-*_8xb128_in1k.py files pick the arch and the drop-path rate.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='KAT', arch='small', img_size=224, patch_size=16, drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # timm's ViT initialisation; the rationals keep their identity/swish initial coefficients.
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

train_dataloader = dict(batch_size=128)

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))

max_epochs = 300
warmup_epochs = 5
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)

# EMA decay 0.9999: mmengine's momentum is 1 - decay.
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
