"""Training stability as the RKAN paper measures it: the coefficient of variation (CV) of the
validation accuracy over the last N evaluations, read from the scalars mmengine logs.

mmengine's ``LocalVisBackend`` appends one JSON object per line to
``<work_dir>/<timestamp>/vis_data/scalars.json``: training lines (``loss``, ``lr``, ...) and, after
each validation, a line with the metrics (``accuracy/top1``, ...) and ``step`` (the epoch for
epoch-based training, else the iteration). A resumed run writes a new timestamp folder; its
evaluations replace those of the same step.

``CV = std / mean`` with the population standard deviation (``numpy.std``, ddof 0), as the RKAN
authors' training code computes it.
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SCALARS = osp.join('vis_data', 'scalars.json')


def scalars_files(path: str) -> List[str]:
    """The scalars.json files of a run, oldest first: ``path`` is a scalars.json file, a
    timestamp folder (holding vis_data/) or a work dir (holding timestamp folders)."""
    if osp.isfile(path):
        return [path]
    if osp.isfile(osp.join(path, SCALARS)):
        return [osp.join(path, SCALARS)]
    # Timestamp folders (YYYYmmdd_HHMMSS) sort in time order.
    return sorted(glob.glob(osp.join(path, '*', SCALARS)))


def read_curve(path: str, metric: str = 'accuracy/top1') -> Dict[int, float]:
    """step -> value of ``metric`` over every evaluation of the run at ``path``.

    Raises:
        ValueError: no scalars.json, an unreadable line, or no line with ``metric`` (the error
            names the keys the files hold).
    """
    files = scalars_files(path)
    if not files:
        raise ValueError(f'{path}: no {SCALARS} found (is it an mmengine work dir?)')
    curve: Dict[int, float] = {}
    keys = set()
    for file in files:
        with open(file) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f'{file}, line {number}: not JSON ({error})') from None
                keys.update(record)
                if metric in record:
                    curve[int(record['step'])] = float(record[metric])
    if not curve:
        raise ValueError(f'{path}: no {metric!r} in {", ".join(files)}; the files hold: '
                         f'{", ".join(sorted(keys)) or "nothing"}')
    return dict(sorted(curve.items()))


def coefficient_of_variation(values: Sequence[float]) -> float:
    """``std(values) / mean(values)``, population standard deviation."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError('the coefficient of variation of no values is undefined')
    mean = values.mean()
    if mean == 0:
        raise ValueError('the coefficient of variation is undefined for a mean of 0')
    return float(values.std() / mean)


def last_window_cv(curve: Dict[int, float], window: int) -> Optional[float]:
    """CV of the last ``window`` evaluations of ``curve``; None when it holds fewer."""
    if window < 2:
        raise ValueError(f'window={window}: a coefficient of variation needs at least 2 values')
    values = list(curve.values())
    return coefficient_of_variation(values[-window:]) if len(values) >= window else None


def plot_curves(curves: Dict[str, Dict[int, float]], path: str, metric: str = 'accuracy/top1',
                windows: Sequence[int] = ()) -> None:
    """Draw every run's curve (label -> step -> value) in one PNG at ``path``; dotted lines
    mark where the last ``windows`` evaluations of the longest run begin."""
    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, curve in curves.items():
        axes.plot(list(curve), list(curve.values()), label=label, linewidth=1.2)
    longest = max(curves.values(), key=len)
    steps = list(longest)
    for window in windows:
        if len(steps) >= window:
            axes.axvline(steps[-window], color='grey', linestyle=':', linewidth=0.8)
    axes.set_xlabel('epoch (step of the evaluation)')
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize='small')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
