# The KAT paper's "ViT + KAN" comparison: ViT-S/16 with B-spline KAN MLPs (see
# vit-kan-tiny_8xb128_in1k.py), trained with the KAT-S recipe.
_base_ = './vit-kan-tiny_8xb128_in1k.py'

model = dict(backbone=dict(arch='deit-small'), head=dict(in_channels=384))
