"""The conventions of mmdet's ResNet family shared by mmrkan's CNN backbones (RegNetY, PyramidNet).

A stem, then stages registered as attributes named in ``res_layers`` (what the RKAN wrapper
augments), ``out_indices`` choosing the returned stage outputs, ``frozen_stages`` freezing the
stem and the first stages, ``norm_eval`` keeping the BatchNorms in eval mode in training.
"""
from typing import List, Optional, Sequence, Tuple, Union

from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def check_stage_indices(name: str, indices: Union[int, Sequence[int]],
                        num_stages: int) -> Tuple[int, ...]:
    """Sorted 0-based stage indices; negative ones count from the last stage."""
    if isinstance(indices, int):
        indices = (indices, )
    if not indices or not all(
            isinstance(i, int) and -num_stages <= i < num_stages for i in indices):
        raise ValueError(f'{name}={indices!r} must be stage indices in 0..{num_stages - 1} '
                         f'(or -{num_stages}..-1)')
    return tuple(sorted({i % num_stages for i in indices}))


class StagedCNN(BaseModule):
    """Base of a CNN backbone with the stage settings of mmdet's ResNet.

    Subclasses build their stem and their stages, list the stage attribute names in
    ``self.res_layers``, return the stem modules from :meth:`stem_modules` and call
    :meth:`_freeze_stages` at the end of ``__init__``.

    Args:
        num_stages: Number of stages of the backbone.
        out_indices: Stages whose outputs are returned (0-based, negative from the end).
        frozen_stages: Freeze the stem and the first ``frozen_stages`` stages (no gradient,
            norms in eval mode); -1 freezes nothing.
        norm_eval: Keep every BatchNorm in eval mode (frozen statistics) in training.
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 num_stages: int,
                 out_indices: Union[int, Sequence[int]],
                 frozen_stages: int,
                 norm_eval: bool,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_indices = check_stage_indices('out_indices', out_indices, num_stages)
        if (not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool)
                or not -1 <= frozen_stages <= num_stages):
            raise ValueError(f'frozen_stages={frozen_stages!r} must be an integer from -1 to '
                             f'{num_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.res_layers: List[str] = []

    def stem_modules(self) -> List[nn.Module]:
        """The modules before the first stage (frozen with ``frozen_stages >= 0``)."""
        raise NotImplementedError

    def frozen_modules(self) -> List[nn.Module]:
        """The modules ``frozen_stages`` freezes: the stem and the first stages."""
        if self.frozen_stages < 0:
            return []
        return self.stem_modules() + [
            getattr(self, name) for name in self.res_layers[:self.frozen_stages]
        ]

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'StagedCNN':
        """Training mode, keeping frozen stages and (with ``norm_eval``) every norm in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
