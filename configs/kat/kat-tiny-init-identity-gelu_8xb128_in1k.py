# The KAT paper's initialisation ablation, rational1 / rational2 = identity / gelu.
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(rational1_init='identity', act_init='gelu'))
