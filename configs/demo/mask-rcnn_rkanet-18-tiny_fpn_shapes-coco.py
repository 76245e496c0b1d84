# The CPU demo detector: the small Mask R-CNN of mask-rcnn_r18-tiny_fpn_shapes-coco.py with an RKAN branch on the
# last stage of its small ResNet-18: trains on the CPU in a few minutes on the generated shapes.
_base_ = './mask-rcnn_r18-tiny_fpn_shapes-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RKAN',
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=16,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=-1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=False,
            style='pytorch',
            init_cfg=None),
        stages=(3, ),
        # The branch starts from scratch: its BatchNorm statistics train (the default follows
        # the backbone's norm_eval).
        branch_norm_eval=False))
