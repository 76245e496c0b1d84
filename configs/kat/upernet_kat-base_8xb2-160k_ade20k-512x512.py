# UperNet with a KAT-B backbone on ADE20K: mmseg's DeiT-B UperNet (multi-level neck) with the KAT
# backbone in place of the ViT; the KAT paper's recipe: 512x512 crops, batch 16 (8 GPUs x 2),
# 160k iterations, AdamW lr 1e-4.
# The backbone checkpoint comes from the official KAT-B weights:
#   python tools/model_converters/kat_timm2mmrkan.py kat_base_patch16_224.pth \
#       pretrain/kat-base_in1k-segmentation.pth --task segmentation
_base_ = './upernet_kat-small_8xb2-160k_ade20k-512x512.py'

embed_dims = 768  # KAT-B's width: the neck and the heads take it
model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='pretrain/kat-base_in1k-segmentation.pth')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
