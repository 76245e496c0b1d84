"""The benchmark scripts run on the CPU with their smallest settings and print their ratios."""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import List

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_script(arguments: List[str]) -> str:
    """Stdout of ``python ARGUMENTS`` run in the repository with one thread; fails on an error."""
    result = subprocess.run([sys.executable, *arguments], cwd=REPO,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_kat_prints_ratio_and_json():
    stdout = run_script(['benchmarks/bench_kat.py', '--device', 'cpu', '--arch', 'tiny',
                         '--batch', '2', '--img-size', '32', '--warmup', '1', '--steps', '2',
                         '--json'])
    summary, json_line = stdout.strip().splitlines()[-2:]
    assert 'KAT/DeiT' in summary, stdout
    result = json.loads(json_line)
    assert result['kat_over_deit'] == pytest.approx(
        result['kat_img_per_s'] / result['deit_img_per_s'], rel=0.01)


def test_bench_rkan_prints_ratio():
    # Batch 2: batch norm in training needs more than one value per channel at stage 4 (1x1).
    stdout = run_script(['benchmarks/bench_rkan.py', '--device', 'cpu', '--batch', '2',
                         '--size', '32', '--warmup', '1', '--steps', '2'])
    assert 'ResNet-50: ' in stdout and 'RKANet-50: ' in stdout, stdout
    ratio_line = stdout.strip().splitlines()[-1]
    assert ratio_line.startswith('RKANet-50 / ResNet-50 training throughput ratio: '), stdout
    assert float(ratio_line.rsplit(' ', 1)[1]) > 0


def test_bench_ops_prints_ratios():
    stdout = run_script(['benchmarks/bench_ops.py', '--device', 'cpu', '--scale', '0.001',
                         '--threads', '1', '--clock', 'cpu', '--warmup', '1', '--repeats', '1'])
    assert stdout.count('speed-up vs reference: ') == 3, stdout
    assert 'throughput vs gelu: ' in stdout, stdout
    assert stdout.count('throughput vs depthwise: ') == 2, stdout
