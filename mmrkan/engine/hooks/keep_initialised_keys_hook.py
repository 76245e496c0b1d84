"""Fine-tune from a checkpoint of another class count without mmengine's mismatch warnings."""
import re
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmrkan.registry import register_hook


@register_hook()
class KeepInitialisedKeysHook(Hook):
    """The listed state-dict keys keep the model's initialisation when a checkpoint whose
    tensors have other shapes for them is loaded (``load_from`` of a model trained on another
    number of classes: its classifier, box, mask or segmentation head).

    The checkpoint's tensors for these keys are replaced by the model's own before mmengine
    copies the checkpoint into the model, so nothing is reported as a mismatch. Keys whose
    shapes agree (e.g. when resuming a run of the fine-tuning config) load normally.

    Args:
        keys: state-dict keys of the model (``tools/train.py`` lists them, see
            ``mmrkan.apis.checkpoint_fit``).
    """
    priority = 'VERY_HIGH'

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str):
            raise ValueError(f'keys={keys!r} must be a list of state-dict keys, not a string')
        self.keys = frozenset(keys)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        own = model.state_dict()
        state_dict = checkpoint.get('state_dict', checkpoint)
        kept = []
        for key, value in list(state_dict.items()):
            name = re.sub(r'^module\.', '', key)  # as the Runner revises the keys
            if name in self.keys and name in own and tuple(value.shape) != tuple(own[name].shape):
                state_dict[key] = own[name].detach().clone().to(value.device)
                kept.append(name)
        if kept:
            runner.logger.info(f'keeping the initialisation of {len(kept)} keys the checkpoint has '
                               f'for another number of classes: {", ".join(kept)}')
