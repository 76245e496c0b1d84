# Mask R-CNN with a SENet-50 FPN (bias-free squeeze-and-excitation after the last norm of every
# block), the RKAN paper's COCO recipe; the backbone from the ImageNet SENet-50 of
# configs/rkan/senet-50_8xb32_in1k.py.
_base_ = './mask-rcnn_resnet-50_fpn_1x_coco.py'

pretrained = 'work_dirs/senet-50_8xb32_in1k/epoch_100.pth'
model = dict(
    backbone=dict(
        # The plug-in of the classifier (configs/_base_/models/senet50.py).
        plugins=[
            dict(
                cfg=dict(type='SqueezeExcitation', ratio=16, bias=False),
                stages=(True, True, True, True),
                position='after_conv3')
        ],
        init_cfg=dict(checkpoint=pretrained)))
