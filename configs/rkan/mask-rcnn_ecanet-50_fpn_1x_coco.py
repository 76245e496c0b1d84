# Mask R-CNN with an ECA-Net-50 FPN (efficient channel attention after the last norm of every
# block), the RKAN paper's COCO recipe; the backbone from the ImageNet ECA-Net-50 of
# configs/rkan/ecanet-50_8xb32_in1k.py.
_base_ = './mask-rcnn_resnet-50_fpn_1x_coco.py'

pretrained = 'work_dirs/ecanet-50_8xb32_in1k/epoch_100.pth'
model = dict(
    backbone=dict(
        # The plug-in of the classifier (configs/_base_/models/eca-resnet50.py).
        plugins=[
            dict(
                cfg=dict(type='EfficientChannelAttention'),
                stages=(True, True, True, True),
                position='after_conv3')
        ],
        init_cfg=dict(checkpoint=pretrained)))
