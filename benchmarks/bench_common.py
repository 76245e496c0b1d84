"""Helpers shared by the benchmark scripts: peak GPU memory of a step, and the largest batch that
fits (halving on out-of-memory)."""
import gc
from typing import Callable, Dict, Optional, Tuple, TypeVar

import torch

T = TypeVar('T')


def peak_memory_gib(steps: Dict[str, Callable[[], None]],
                    device: torch.device) -> Dict[str, Optional[float]]:
    """Peak GPU memory allocated during one more call of each step (all models stay resident, so
    each figure includes the others' weights and optimizer states); None off CUDA."""
    peaks = {}
    for name, step in steps.items():
        if device.type != 'cuda':
            peaks[name] = None
            continue
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        peaks[name] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return peaks


def largest_fitting_batch(run: Callable[[int], T], batch: int, halve_on_oom: bool) -> Tuple[int, T]:
    """``run(batch)``, retried with half the batch after each CUDA out-of-memory error when
    ``halve_on_oom`` (so a benchmark can start from a batch meant to fill the chip)."""
    while True:
        try:
            return batch, run(batch)
        except torch.cuda.OutOfMemoryError:
            if not halve_on_oom or batch == 1:
                raise
        # Outside the except block: the traceback, which holds the failed run's tensors, is gone.
        gc.collect()
        torch.cuda.empty_cache()
        print(f'out of GPU memory at batch {batch}: retrying with {batch // 2}', flush=True)
        batch //= 2
