# ImageNet with the RKAN paper's augmentation for models built from configs/_base_/models: the
# pipeline of imagenet_bs32_rkan-randaug.py, with MixUp (alpha 0.2, probability 0.3) and CutMix
# (probability 0.5) as batch augments of the data preprocessor. (The RKANet configs of
# configs/rkan/rkanet-50_8xb32_in1k.py set the same two in the model's train_cfg instead.)
_base_ = './imagenet_bs32_rkan-randaug.py'

data_preprocessor = dict(
    batch_augments=dict(
        augments=[dict(type='Mixup', alpha=0.2),
                  dict(type='CutMix', alpha=1.0)],
        probs=[0.3, 0.5]))
