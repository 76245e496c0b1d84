# torchvision's RandAugment(num_ops=2, magnitude=9), which the RKAN authors use on every dataset:
# two of torchvision's 14 operations per image, each always applied, at magnitude 9 of 30 (31
# bins), signed operations negated half of the time, geometric ones with nearest interpolation
# and black fill. The dataset bases of configs/rkan put it in their training pipelines.
rand_augment = dict(
    type='RandAugment',
    policies=[
        # torchvision's Identity: a brightness change of zero.
        dict(type='Brightness', magnitude=0.),
        dict(type='Shear', magnitude_range=(0, 0.3), direction='horizontal'),
        dict(type='Shear', magnitude_range=(0, 0.3), direction='vertical'),
        # torchvision translates by up to 150/331 of the image side.
        dict(type='Translate', magnitude_range=(0, 150 / 331), direction='horizontal'),
        dict(type='Translate', magnitude_range=(0, 150 / 331), direction='vertical'),
        dict(type='Rotate', magnitude_range=(0, 30)),
        dict(type='Brightness', magnitude_range=(0, 0.9)),
        dict(type='ColorTransform', magnitude_range=(0, 0.9)),
        dict(type='Contrast', magnitude_range=(0, 0.9)),
        dict(type='Sharpness', magnitude_range=(0, 0.9)),
        dict(type='Posterize', magnitude_range=(8, 4)),
        dict(type='Solarize', magnitude_range=(255, 0)),
        dict(type='AutoContrast'),
        dict(type='Equalize'),
    ],
    num_policies=2,
    total_level=30,
    magnitude_level=9,
    magnitude_std=0,
    hparams=dict(pad_val=0, prob=1.0, interpolation='nearest'))
