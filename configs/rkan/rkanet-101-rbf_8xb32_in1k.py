# RKANet-101 with the RBF basis instead of Chebyshev polynomials in its KAN convolutions: the
# authors' FastKAN layer (Gaussian bumps on a grid over [-1, 1], raw input, base linear with
# bias), 3 bumps in the first KAN convolution and 2 in the second (their grid_size=(3, 2)).
_base_ = './rkanet-101_8xb32_in1k.py'

# degrees=None: the base config's Chebyshev degrees do not apply to bumps.
model = dict(backbone=dict(basis='rbf', degrees=None, grid_sizes=(3, 2)))
