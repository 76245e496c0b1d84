# RKANet-101 with the RBF basis (Gaussian bumps, the paper's comparison) instead of Chebyshev
# polynomials in its KAN convolutions.
_base_ = './rkanet-101_8xb32_in1k.py'

model = dict(backbone=dict(basis='rbf'))
