# The KAT paper's "ViT + KAN" comparison: ViT-B/16 with B-spline KAN MLPs (see
# vit-kan-tiny_8xb128_in1k.py), trained with the KAT-B recipe (drop path 0.4). The paper reports
# that this model's training diverged (NaN).
_base_ = './vit-kan-tiny_8xb128_in1k.py'

model = dict(backbone=dict(arch='deit-base', drop_path_rate=0.4), head=dict(in_channels=768))
