# DenseNet-201, ImageNet head (configs set num_classes).
_base_ = 'mmpretrain::_base_/models/densenet/densenet201.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)
