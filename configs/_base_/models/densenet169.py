# DenseNet-169, ImageNet head (configs set num_classes).
_base_ = 'mmpretrain::_base_/models/densenet/densenet169.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)
