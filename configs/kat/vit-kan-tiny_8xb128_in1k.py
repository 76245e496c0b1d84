# The KAT paper's "ViT + KAN" comparison: ViT-T/16 whose MLPs are B-spline KANs of the same
# widths (efficient-KAN's KANLinear, D -> 4D -> D), trained with the KAT-T recipe. The KAN
# settings reproduce the paper's counts 12.8M / 50.4M / 199.8M (ViT-T/S/B + KAN): 3 parameters
# per edge (grid_size=1, spline_order=1: 2 spline coefficients, the base weight; no standalone
# scaler), the only per-edge count that gives all three; the output biases (the MLP's, kept) do
# not change the rounded counts. docs/models.md, "ViT + KAN", says how they were found. The same
# model is the component ablation's "B-spline, ungrouped, KAN init" row.
_base_ = './kat-tiny_8xb128_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTKAN',
        arch='deit-tiny',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        kan_cfg=dict(
            grid_size=1, spline_order=1, enable_standalone_scale_spline=False, bias=True)))
