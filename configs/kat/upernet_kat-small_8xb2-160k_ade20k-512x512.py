# UperNet with a KAT-S backbone on ADE20K: mmseg's DeiT-S UperNet (multi-level neck) with the KAT
# backbone in place of the ViT; the KAT paper's recipe: 512x512 crops, batch 16 (8 GPUs x 2),
# 160k iterations, AdamW lr 1e-4.
# The backbone checkpoint comes from the official KAT-S weights:
#   python tools/model_converters/kat_timm2mmrkan.py kat_small_patch16_224.pth \
#       pretrain/kat-small_in1k-segmentation.pth --task segmentation
_base_ = 'mmseg::vit/vit_deit-s16_mln_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)

# The backbone's width (KAT-T 192, KAT-S 384, KAT-B 768): the neck and the heads take it. A
# config for another arch sets both (tools/train.py refuses a neck that does not fit the backbone).
embed_dims = 384
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='KAT',
        arch='small',
        img_size=(512, 512),
        out_indices=(2, 5, 8, 11),
        out_type='featmap',
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint='pretrain/kat-small_in1k-segmentation.pth')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))

optim_wrapper = dict(optimizer=dict(lr=1e-4))
