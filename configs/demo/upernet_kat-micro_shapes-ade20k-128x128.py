# UperNet with a micro KAT (4 blocks of width 64, patch 8; the neck makes the usual 1/4..1/32
# pyramid from its 1/8 tokens) that trains on the CPU in a few minutes
# on the generated shapes: the KAT UperNet of configs/kat/ at demo size.
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    '../_base_/datasets/shapes-ade20k.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        _delete_=True,
        type='KAT',
        arch=dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=256),
        img_size=(128, 128),
        patch_size=8,
        out_indices=(0, 1, 2, 3),
        out_type='featmap',
        final_norm=False,
        drop_path_rate=0.0),
    neck=dict(in_channels=[64, 64, 64, 64], out_channels=64, scales=[2, 1, 0.5, 0.25]),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64, num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=32, num_classes=4, norm_cfg=norm_cfg))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=40, end=400),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=400, val_interval=400)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=400, max_keep_ckpts=1))
# Seeded: the same command on the same machine repeats the metrics. On the CPU the seed is enough;
# deterministic=True would make torch refuse CUDA ops that lack a deterministic kernel (e.g. the
# backward of bilinear upsampling).
randomness = dict(seed=0, deterministic=False)
