# The KAT paper's initialisation ablation, rational1 / rational2 = identity / identity.
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(rational1_init='identity', act_init='identity'))
