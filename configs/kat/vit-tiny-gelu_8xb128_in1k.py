# The KAT paper's activation ablation on ViT-T/16: mmpretrain's VisionTransformer (DeiT-T's
# sizes) with its GELU MLPs, trained with the KAT-T recipe (configs/_base_/kat_8xb128_in1k.py).
# The other rows change the MLP activation (vit-tiny-{relu,silu,prelu,pau}_8xb128_in1k.py).
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch='deit-tiny',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1))
