"""Hooks that let the tool tests look inside training runs launched as subprocesses."""
import json
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankStateHook(Hook):
    """Each rank saves its final parameters and the ids of the validation images it evaluated.

    Buffers are left out: with mmengine's DDP settings (``broadcast_buffers=False``) BatchNorm
    running statistics are per rank by design."""

    def __init__(self) -> None:
        self.val_ids: list = []

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.val_ids += [sample.img_id for sample in data_batch['data_samples']]

    def after_run(self, runner) -> None:
        rank = get_rank()
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.save(parameters, osp.join(runner.work_dir, f'rank{rank}_parameters.pth'))
        with open(osp.join(runner.work_dir, f'rank{rank}_val_ids.json'), 'w') as f:
            json.dump(self.val_ids, f)


class Interrupted(RuntimeError):
    pass


@HOOKS.register_module()
class InterruptAfterEpochHook(Hook):
    """Simulates a crash right after the checkpoint of epoch ``epoch`` was written."""
    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.epoch:  # the loop counts the finished epoch after this hook
            raise Interrupted(f'interrupted after epoch {self.epoch}')
