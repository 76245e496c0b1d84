# The KAT paper's rational-order ablation: KAT-T with rationals of order (m, n) = (7, 6)
# (numerator degree 7, denominator degree 6) instead of (5, 4).
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(backbone=dict(rational_order=(7, 6)))
