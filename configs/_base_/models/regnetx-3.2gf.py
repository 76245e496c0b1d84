# RegNetX-3.2GF, ImageNet head (configs set num_classes).
_base_ = 'mmpretrain::_base_/models/regnet/regnetx_3.2gf.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)
# Initialised as torchvision's (the RKAN authors' baselines): the last norm of each residual
# block is not zeroed (mmpretrain's default zeroes it).
model = dict(backbone=dict(zero_init_residual=False))
