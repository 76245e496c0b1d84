"""Throughput (images/s) of steps timed in turns, so that load changes hit every model alike."""
import statistics
import time
from typing import Callable, Dict

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the queued work of ``device`` to finish (a no-op off CUDA)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def images_per_second(steps: Dict[str, Callable[[], None]], batch_size: int, device: torch.device,
                      warmup: int, iters: int) -> Dict[str, float]:
    """Median images/s of each step over ``iters`` timed calls after ``warmup`` untimed ones.

    The timed calls of the steps alternate, one of each in turn.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    rates = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            rates[name].append(batch_size / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}
