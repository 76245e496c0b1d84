# The KAT paper's component ablation, "rational, ungrouped": KAT-T with one rational per channel
# (192 in each mixer's first rational, 768 in its second), each with its own numerator and
# denominator, instead of 8 groups sharing one numerator.
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(num_groups='per_channel', per_group_numerator=True))
