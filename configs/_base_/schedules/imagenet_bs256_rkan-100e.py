# The RKAN paper's ImageNet schedule: SGD with Nesterov momentum 0.9, weight decay 1e-4, 100
# epochs, lr 0.05 per 128 images (the paper's batch; 0.1 for the 256 of 8 GPUs x 32) raised
# linearly from a tenth of it (0.005 per 128 images) over 10 epochs, then cosine to 1e-5 over
# the other 90, updated every iteration; mixed precision.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=90,
        eta_min=1e-5,
        by_epoch=True,
        begin=10,
        end=100,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr 0.1 is for 256 images per iteration; scaled linearly with --auto-scale-lr.
auto_scale_lr = dict(base_batch_size=256)
