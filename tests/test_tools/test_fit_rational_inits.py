"""tools/misc/fit_rational_inits.py reproduces the fitted initial coefficients of the rationals."""
import ast
import os.path as osp

import pytest

from mmrkan.ops.group_rational import RATIONAL_INITS
from mmrkan.testing.tools import run_script

pytest.importorskip('scipy', reason='the fit needs scipy')

TOOL = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools', 'misc',
                'fit_rational_inits.py')


def test_the_order_3_2_fits_are_the_tools(capsys):
    """From its first start alone the tool finds the (3, 2) coefficients of RATIONAL_INITS (the
    signs of b aside: only |b| enters the denominator)."""
    status, out, _ = run_script(capsys, TOOL, '--orders', '3,2', '--starts', '1')
    assert status == 0
    fits = ast.literal_eval('{' + '\n'.join(line for line in out.splitlines()
                                            if not line.startswith('#')) + '}')
    assert set(fits) == {'swish', 'gelu'}
    for init, (numerator, denominator) in fits.items():
        expected_numerator, expected_denominator = RATIONAL_INITS[(3, 2)][init]
        assert numerator == pytest.approx(expected_numerator, rel=1e-5, abs=1e-7)
        assert [abs(b) for b in denominator] == pytest.approx(
            [abs(b) for b in expected_denominator], rel=1e-5, abs=1e-7)
    assert 'max |F - swish| on [-3, 3] = 0.00692' in out
