# DenseNet-121, ImageNet head (configs set num_classes).
_base_ = 'mmpretrain::_base_/models/densenet/densenet121.py'
custom_imports = dict(imports=['mmrkan'], allow_failed_imports=False)
