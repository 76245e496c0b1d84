# The KAT paper's activation ablation: ViT-T/16 with ReLU in its MLPs.
_base_ = './vit-tiny-gelu_8xb128_in1k.py'

model = dict(backbone=dict(layer_cfgs=dict(act_cfg=dict(type='ReLU'))))
