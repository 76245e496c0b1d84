# The RKAN paper's schedule for CIFAR-100, Tiny ImageNet and Food-101, trained from scratch:
# 200 epochs, SGD with Nesterov momentum 0.9, weight decay 5e-4, batch 128 (8 GPUs x 16), lr
# 0.005 raised linearly to 0.05 over 10 epochs, then cosine to 1e-5 over the other 190, updated
# every iteration; mixed precision.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))

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
        T_max=190,
        eta_min=1e-5,
        by_epoch=True,
        begin=10,
        end=200,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr 0.05 is for 128 images per iteration; scaled linearly with --auto-scale-lr.
auto_scale_lr = dict(base_batch_size=128)
