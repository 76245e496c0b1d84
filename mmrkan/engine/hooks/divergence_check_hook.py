"""Stop a diverging run at once, before it writes (or rotates away) a checkpoint.

mmengine trains on through NaN losses and its ``CheckpointHook`` deletes the oldest checkpoint
*before* it writes the next one, so with ``max_keep_ckpts`` a run that diverged keeps only
checkpoints full of NaN. mmdet's ``CheckInvalidLossHook`` checks the total loss but stops with
an ``AssertionError`` that carries no message, in mmdet configs only.
"""
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmdet.engine.hooks import CheckInvalidLossHook
from mmengine.dist import all_reduce, is_distributed
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmengine.structures import BaseDataElement
from torch import nn

from mmrkan.registry import register_hook


class TrainingDiverged(RuntimeError):
    """The run stopped: its loss, gradients or weights stopped being finite."""


def _model(runner) -> nn.Module:
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def _float_tensors(model: nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    for name, tensor in model.state_dict(keep_vars=True).items():
        if torch.is_floating_point(tensor) and tensor.device.type != 'meta':
            yield name, tensor.detach()


def non_finite_names(tensors: Sequence[Tuple[str, torch.Tensor]]) -> List[str]:
    """Names of the tensors holding a NaN or an infinity (one device sync for all)."""
    if not tensors:
        return []
    finite = torch.stack([torch.isfinite(t).all().to(tensors[0][1].device) for _, t in tensors]).cpu()
    return [name for (name, _), ok in zip(tensors, finite.tolist()) if not ok]


def _checkpoint_tensors(checkpoint: dict) -> Iterator[Tuple[str, torch.Tensor]]:
    """The floating tensors a Runner checkpoint holds: weights, EMA weights, optimizer state."""

    def walk(node, path: str):
        if isinstance(node, torch.Tensor):
            if torch.is_floating_point(node):
                yield path, node
        elif isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f'{path}.{key}' if path else str(key))
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                yield from walk(value, f'{path}.{index}')

    for part in ('state_dict', 'ema_state_dict', 'optimizer'):
        yield from walk(checkpoint.get(part), part)


def _count_predictions(sample: BaseDataElement) -> Tuple[int, int]:
    """(predictions, non-finite predicted values) of one output data sample: the number of
    predicted instances (detection) or 1 (a label, a label map)."""
    predicted = non_finite = 0
    for key, value in sample.items():
        if not key.startswith('pred_') and key != 'seg_logits':
            continue
        if isinstance(value, BaseDataElement):
            tensors = [v for v in value.values() if isinstance(v, torch.Tensor)]
        else:
            tensors = [value] if isinstance(value, torch.Tensor) else []
        if key.startswith('pred_'):
            predicted += len(value) if 'instances' in key and hasattr(value, '__len__') else 1
        non_finite += sum(int((~torch.isfinite(t)).sum()) for t in tensors if torch.is_floating_point(t))
    return predicted, non_finite


@register_hook()
class DivergenceCheckHook(CheckInvalidLossHook):
    """Stop training with :class:`TrainingDiverged` at the first non-finite loss term or
    gradient norm, and never let a checkpoint with non-finite weights be written.

    - After every ``interval``-th iteration: every loss term and the total loss must be finite,
      and the gradient norm too when ``optim_wrapper.clip_grad`` measures it (with AMP's dynamic
      loss scaling an infinite gradient only makes the scaler skip the step: not checked).
      Where no gradient norm is measured (no ``clip_grad``, or AMP) the weights are checked
      instead, since a non-finite gradient makes them non-finite before the loss shows it.
    - At the end of every epoch, and when any checkpoint is about to be written: the weights
      (and the optimizer state) must be finite. The hook runs before mmengine's
      ``CheckpointHook``, which deletes the oldest checkpoint before it writes the next one, so
      the last checkpoint with finite weights is never rotated away.
    - A validation that gives no metric says why (no prediction at all, or non-finite ones);
      when the training loss grew more than ``loss_growth`` times since the start of the run,
      or the predictions are not finite, the run has diverged and stops.

    The message names the epoch, the iteration, every loss term and the last checkpoint the
    run wrote (``work_dir/last_checkpoint``). In a distributed run every process stops.

    Tensors that are non-finite before training (e.g. ``-inf`` attention masks kept as buffers)
    are not checked.

    Args:
        interval: check the loss every ``interval`` iterations (mmdet's hook checks every 50;
            a check is one device synchronisation).
        loss_growth: an empty validation after the training loss grew by more than this factor
            means divergence.
    """
    priority = 80  # after LoggerHook (BELOW_NORMAL=60) logged the iteration, before CheckpointHook (VERY_LOW=90)

    def __init__(self, interval: int = 1, loss_growth: float = 1e3) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval={interval!r} must be an integer >= 1')
        if not loss_growth > 1:
            raise ValueError(f'loss_growth={loss_growth!r} must be > 1')
        super().__init__(interval=interval)
        self.loss_growth = loss_growth
        self._non_finite_at_start: frozenset = frozenset()
        self._first_loss: Optional[float] = None
        self._last_loss: Optional[float] = None
        self._val_images = self._val_predictions = self._val_non_finite = 0

    # Training.

    def before_train(self, runner) -> None:
        self._non_finite_at_start = frozenset(non_finite_names(list(_float_tensors(_model(runner)))))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        losses = self._losses(outputs)
        problem = next((f'{name} is {value}' for name, value in losses.items()
                        if not torch.isfinite(torch.tensor(value))), None)
        grad_norm = self._checked_grad_norm(runner)
        if problem is None and grad_norm is not None and not torch.isfinite(torch.tensor(grad_norm)):
            problem = f'the gradient norm is {grad_norm}'
        if problem is None and grad_norm is None:
            problem = self._weights_problem(runner)
        if 'loss' in losses and problem is None:
            self._first_loss = losses['loss'] if self._first_loss is None else self._first_loss
            self._last_loss = losses['loss']
        problem = self._agreed(problem)
        if problem is not None:
            terms = ', '.join(f'{name}={value:.4g}' for name, value in losses.items())
            raise TrainingDiverged(f'{problem} at {self._where(runner, batch_idx)} ({terms}); '
                                   f'{self._last_checkpoint(runner)}')

    def after_train_epoch(self, runner) -> None:
        problem = self._agreed(self._weights_problem(runner))
        if problem is not None:
            raise TrainingDiverged(f'{problem} at the end of epoch {runner.epoch + 1}; '
                                   f'{self._last_checkpoint(runner)}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = [name for name in non_finite_names(list(_checkpoint_tensors(checkpoint)))
               if name.split('.', 1)[-1] not in self._non_finite_at_start]
        if bad:
            raise TrainingDiverged(
                f'refusing to write a checkpoint with {len(bad)} non-finite tensors '
                f'({", ".join(bad[:3])}{", ..." if len(bad) > 3 else ""}); {self._last_checkpoint(runner)}')

    # Validation.

    def before_val_epoch(self, runner) -> None:
        self._val_images = self._val_predictions = self._val_non_finite = 0

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or []:
            if isinstance(sample, BaseDataElement):
                predicted, non_finite = _count_predictions(sample)
                self._val_images += 1
                self._val_predictions += predicted
                self._val_non_finite += non_finite

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if metrics:
            return
        if self._val_non_finite:
            why = f'{self._val_non_finite} predicted values were not finite'
        elif self._val_images and not self._val_predictions:
            why = f'the model predicted nothing on any of the {self._val_images} images'
        else:
            why = 'the evaluator returned no metric'
        grew = (self._first_loss is not None and self._last_loss is not None and self._first_loss > 0
                and self._last_loss > self.loss_growth * self._first_loss)
        where = f'validation after epoch {runner.epoch}' if isinstance(
            runner.train_loop, EpochBasedTrainLoop) else f'validation at iteration {runner.iter}'
        problem = None
        if self._val_non_finite or grew:
            growth = (f'; the training loss grew from {self._first_loss:.4g} to {self._last_loss:.4g}'
                      if grew else '')
            problem = f'{where} produced no results: {why}{growth}: the run diverged (lower the learning rate)'
        problem = self._agreed(problem)  # the metrics are every process's; the losses are not
        if problem is not None:
            raise TrainingDiverged(f'{problem}; {self._last_checkpoint(runner, finite=False)}')
        runner.logger.warning(f'{where} produced no results: {why} (e.g. no score above the test '
                              'score threshold early in training)')

    # Helpers.

    @staticmethod
    def _losses(outputs: Optional[dict]) -> Dict[str, float]:
        """The loss terms and the total loss of an iteration's log variables, as floats."""
        losses = {}
        for name, value in (outputs or {}).items():
            if 'loss' in name:
                losses[name] = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)
        return losses

    @staticmethod
    def _checked_grad_norm(runner) -> Optional[float]:
        """The gradient norm ``clip_grad`` measured, or None when it is not measured or a
        dynamic loss scaler handles non-finite gradients (AMP)."""
        optim_wrapper = runner.optim_wrapper
        wrappers = optim_wrapper.values() if hasattr(optim_wrapper, 'values') else [optim_wrapper]
        if any(hasattr(wrapper, 'loss_scaler') for wrapper in wrappers):
            return None
        buffer = runner.message_hub.log_scalars.get('train/grad_norm')
        return None if buffer is None else float(buffer.current())

    def _weights_problem(self, runner) -> Optional[str]:
        bad = [name for name in non_finite_names(list(_float_tensors(_model(runner))))
               if name not in self._non_finite_at_start]
        if not bad:
            return None
        return f'the weights are not finite ({len(bad)} tensors, e.g. {", ".join(bad[:3])})'

    @staticmethod
    def _agreed(problem: Optional[str]) -> Optional[str]:
        """The problem of this process, or a note that another process has one: all stop."""
        if not is_distributed():
            return problem
        flag = torch.tensor([float(problem is not None)])
        all_reduce(flag, op='max')
        if flag.item() and problem is None:
            return 'another process found the loss, the gradients or the weights non-finite'
        return problem

    @staticmethod
    def _where(runner, batch_idx: int) -> str:
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            return f'epoch {runner.epoch + 1} iteration {batch_idx + 1}'
        return f'iteration {runner.iter + 1}'

    @staticmethod
    def _last_checkpoint(runner, finite: bool = True) -> str:
        """Where the run's last checkpoint is (``CheckpointHook`` records it after writing)."""
        record = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(record):
            with open(record) as f:
                checkpoint = f.read().strip()
            if osp.isfile(checkpoint):
                return f'the last {"finite " if finite else ""}checkpoint is {checkpoint}'
        return f'no checkpoint was written (work dir {runner.work_dir})'
