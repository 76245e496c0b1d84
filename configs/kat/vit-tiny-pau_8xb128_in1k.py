# The KAT paper's activation ablation: ViT-T/16 with PAU in its MLPs.
# PAU (Molina et al.): one learnable rational of order (5, 4) per MLP, initialised as
# the PAU authors' fit of leaky ReLU (mmrkan/models/layers/pau.py).
_base_ = './vit-tiny-gelu_8xb128_in1k.py'

model = dict(backbone=dict(layer_cfgs=dict(act_cfg=dict(type='PAU'))))
