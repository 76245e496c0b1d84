"""The baseline of a KAN model: the same model with its KAN parts replaced by what they replace.

- RKAN wrapper (residual KAN branches on a CNN): the wrapped backbone alone, from its config.
- GR-KAN channel mixers (KAT, KATDet, UperNet-KAT, ...): the ViT MLP they stand for,
  ``fc1 -> GELU -> fc2`` with the same widths and dropout, everything else of the model
  (attention, windows, necks, heads) unchanged.
"""
import copy

from mmcv.cnn.bricks.transformer import FFN
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn

from mmrkan.apis import ToolError
from mmrkan.models.layers.gr_kan import GRKAN
from .task_inputs import build_task_model


def _is_rkan(backbone: dict) -> bool:
    # A type may be scoped, e.g. 'mmdet.RKAN'.
    return isinstance(backbone.get('type'), str) and backbone['type'].split('.')[-1] == 'RKAN'


def _replace_gr_kan_mixers(model: nn.Module) -> int:
    """Replace every GRKAN of ``model`` by a GELU MLP in place; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GRKAN):
                setattr(
                    parent, name,
                    FFN(embed_dims=child.fc1.in_features,
                        feedforward_channels=child.fc1.out_features,
                        act_cfg=dict(type='GELU'),
                        ffn_drop=child.drop1.p,
                        add_identity=False))
                replaced += 1
    return replaced


def build_baseline(cfg: Config) -> BaseModel:
    """The baseline model of ``cfg`` (see the module doc).

    Raises:
        ToolError: if the model has no KAN parts (no RKAN backbone, no GR-KAN mixer).
    """
    backbone = cfg.model.get('backbone') or {}
    if _is_rkan(backbone):
        baseline_cfg = copy.deepcopy(cfg)
        baseline_cfg.model.backbone = backbone['backbone']
        return build_task_model(baseline_cfg)
    model = build_task_model(cfg)
    if not _replace_gr_kan_mixers(model):
        raise ToolError(f'the model of this config ({cfg.model.get("type")} with backbone '
                        f'{backbone.get("type")}) has no KAN parts to compare against a baseline: '
                        'expected an RKAN backbone or GR-KAN mixers (KAT)')
    return model
