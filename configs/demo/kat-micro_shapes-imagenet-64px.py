# A micro KAT classifier (4 blocks of width 64, patch 8) that trains on the CPU in about a minute on
# the generated shapes: the KAT classifiers of configs/kat/ at demo size.
_base_ = [
    '../_base_/datasets/shapes-imagenet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='KAT',
        arch=dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=256),
        img_size=64,
        patch_size=8,
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=3,
        in_channels=64,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=True, begin=0, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=2, end=80),
]
train_cfg = dict(by_epoch=True, max_epochs=80, val_interval=80)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=80, max_keep_ckpts=1))
# Seeded: the same command on the same machine repeats the metrics. On the CPU the seed is enough;
# deterministic=True would make torch refuse CUDA ops that lack a deterministic kernel (e.g. the
# backward of bilinear upsampling).
randomness = dict(seed=0, deterministic=False)
