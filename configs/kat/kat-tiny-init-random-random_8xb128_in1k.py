# The KAT paper's initialisation ablation, rational1 / rational2 = random / random: every
# rational coefficient drawn Xavier-uniform (docs/ops.md, "Initial coefficients"). The same
# model is the component ablation's "rational, grouped, PyTorch default init" row (both 53.2).
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(rational1_init='random', act_init='random'))
