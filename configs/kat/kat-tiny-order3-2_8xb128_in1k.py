# The KAT paper's rational-order ablation: KAT-T with rationals of order (m, n) = (3, 2)
# (numerator degree 3, denominator degree 2) instead of (5, 4).
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(rational_order=(3, 2)))
