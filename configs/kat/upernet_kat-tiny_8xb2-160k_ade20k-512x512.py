# UperNet with a KAT-T backbone on ADE20K: the KAT-S UperNet recipe (512x512 crops, batch 16 =
# 8 GPUs x 2, 160k iterations, AdamW lr 1e-4) with the smallest KAT. The KAT paper reports no
# KAT-T segmentation result.
# The backbone checkpoint comes from the official KAT-T weights:
#   python tools/model_converters/kat_timm2mmrkan.py kat_tiny_patch16_224.pth \
#       pretrain/kat-tiny_in1k-segmentation.pth --task segmentation
_base_ = './upernet_kat-small_8xb2-160k_ade20k-512x512.py'

embed_dims = 192  # KAT-T's width: the neck and the heads take it
model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(checkpoint='pretrain/kat-tiny_in1k-segmentation.pth')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
