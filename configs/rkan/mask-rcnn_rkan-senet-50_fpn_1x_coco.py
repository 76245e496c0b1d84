# Mask R-CNN with an RKAN-SENet-50 FPN (SENet-50 with an RKAN branch on stage 4), the RKAN paper's
# COCO recipe; the whole backbone, branch included, from the ImageNet classifier of
# configs/rkan/rkan-senet-50_8xb32_in1k.py.
_base_ = './mask-rcnn_rkanet-50_fpn_1x_coco.py'

pretrained = 'work_dirs/rkan-senet-50_8xb32_in1k/epoch_100.pth'
model = dict(
    backbone=dict(
        backbone=dict(
            # The plug-in of the classifier (configs/_base_/models/senet50.py).
            plugins=[
                dict(
                    cfg=dict(type='SqueezeExcitation', ratio=16, bias=False),
                    stages=(True, True, True, True),
                    position='after_conv3')
            ]),
        init_cfg=dict(checkpoint=pretrained)))
