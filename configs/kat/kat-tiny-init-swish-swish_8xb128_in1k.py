# The KAT paper's initialisation ablation, rational1 / rational2 = swish / swish.
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(rational1_init='swish', act_init='swish'))
