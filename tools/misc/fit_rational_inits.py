"""Fit the initial coefficients of the group-rational activation to SiLU and GELU.

Nonlinear least squares (scipy's Levenberg-Marquardt) of ``F(x) = P(x) / Q(x)`` with the
kernels' denominator ``Q = 1 + |b1||x| + ... + |bn||x|^n`` on 1000 points of [-3, 3], from a
SiLU-like start and ``--starts - 1`` random perturbations of it (fixed seed); prints the best fit
of each order and function as Python literals and its maximum error. mmrkan's ``RATIONAL_INITS``
(mmrkan/ops/group_rational.py) hold this tool's output for the orders (3, 2) and (7, 6); the
(5, 4) entries are the authors' (see docs/ops.md).

    python tools/misc/fit_rational_inits.py --orders 3,2 7,6
"""
import argparse
from typing import Callable, List, Tuple

import numpy as np
from scipy.optimize import least_squares
from scipy.special import erf

TARGETS = {
    'swish': lambda x: x / (1 + np.exp(-x)),
    'gelu': lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))),
}


def rational(coefficients: np.ndarray, m: int, n: int, x: np.ndarray) -> np.ndarray:
    a, b = coefficients[:m + 1], coefficients[m + 1:]
    p = sum(a[k] * x**k for k in range(m + 1))
    q = 1 + sum(abs(b[k]) * np.abs(x)**(k + 1) for k in range(n))
    return p / q


def fit(target: Callable, m: int, n: int, starts: int, seed: int) -> Tuple[float, np.ndarray]:
    x = np.linspace(-3, 3, 1000)
    y = target(x)
    rng = np.random.default_rng(seed)
    best = None
    for start in range(starts):
        initial = np.zeros(m + 1 + n)
        initial[1:3] = 0.5, 0.25  # x sigmoid(x) near 0
        if start:
            initial += rng.normal(0, 0.3 if start % 2 else 0.05, initial.shape)
        result = least_squares(lambda c: rational(c, m, n, x) - y, initial, method='lm',
                               xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=4000)
        error = float(np.abs(rational(result.x, m, n, x) - y).max())
        if best is None or error < best[0]:
            best = (error, result.x)
    return best


def parse_order(text: str) -> Tuple[int, int]:
    m, n = (int(v) for v in text.split(','))
    return m, n


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--orders', type=parse_order, nargs='+', default=[(3, 2), (7, 6)],
                        help='orders m,n to fit (default: 3,2 7,6)')
    parser.add_argument('--targets', nargs='+', default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument('--starts', type=int, default=12, help='starting points per fit')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for m, n in args.orders:
        for name in args.targets:
            error, coefficients = fit(TARGETS[name], m, n, args.starts, args.seed)
            print(f'# ({m}, {n}) {name}: max |F - {name}| on [-3, 3] = {error:.3g}')
            print(f"'{name}': ({coefficients[:m + 1].tolist()},\n"
                  f'          {coefficients[m + 1:].tolist()}),', flush=True)


if __name__ == '__main__':
    main()
