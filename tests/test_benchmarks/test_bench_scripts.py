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


def test_bench_rkan_prints_ratio_and_json():
    # Batch 2: batch norm in training needs more than one value per channel at stage 4 (1x1).
    stdout = run_script(['benchmarks/bench_rkan.py', '--device', 'cpu', '--batch', '2',
                         '--size', '32', '--warmup', '1', '--steps', '2', '--json'])
    assert 'ResNet-50: ' in stdout and 'RKANet-50: ' in stdout, stdout
    json_line, ratio_line = stdout.strip().splitlines()[-2:]
    assert ratio_line.startswith('RKANet-50 / ResNet-50 training throughput ratio: '), stdout
    result = json.loads(json_line)
    assert float(ratio_line.rsplit(' ', 1)[1]) == pytest.approx(result['rkanet_over_resnet'])
    assert result['rkanet_over_resnet'] == pytest.approx(
        result['rkanet50_img_per_s'] / result['resnet50_img_per_s'], rel=0.01)
    assert result['batch'] == 2 and result['rkanet50_peak_memory_gib'] is None


def test_bench_rkan_refuses_fp16_on_the_cpu():
    result = subprocess.run([sys.executable, 'benchmarks/bench_rkan.py', '--device', 'cpu',
                             '--amp'], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and '--amp fp16 needs --device cuda' in result.stderr


def test_bench_ops_prints_ratios_and_json():
    stdout = run_script(['benchmarks/bench_ops.py', '--device', 'cpu', '--scale', '0.001',
                         '--threads', '1', '--clock', 'cpu', '--warmup', '1', '--repeats', '1',
                         '--json'])
    assert stdout.count('speed-up vs reference: ') == 4, stdout
    assert stdout.count('throughput vs gelu: ') == 2, stdout
    assert stdout.count('throughput vs depthwise: ') == 2, stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    assert [case['op'] for case in result['cases']] == ['group_rational'] * 2 + ['kan_conv2d'] * 2
    for case in result['cases']:
        ms = case['ms']
        assert case['vs_baseline_fwd_bwd'] == pytest.approx(
            ms[case['baseline']]['fwd_bwd'] / ms['ours']['fwd_bwd'], rel=0.01)
    assert result['copy_gbps'] is None  # measured on CUDA only


def test_bench_ops_families_prints_ratios_to_chebyshev():
    stdout = run_script(['benchmarks/bench_ops.py', '--device', 'cpu', '--scale', '0.001',
                         '--threads', '1', '--clock', 'cpu', '--warmup', '0', '--repeats', '1',
                         '--families', '--num-functions', '4', '--rounds', '2', '--json'])
    assert stdout.count('fwd+bwd / chebyshev') == 2, stdout  # the two RKAN shapes
    result = json.loads(stdout.strip().splitlines()[-1])
    variants = [case['variant'] for case in result['families']]
    assert variants[:6] == ['chebyshev', 'legendre', 'jacobi', 'hermite', 'rbf',
                            'b_spline (order 3, grid 1)'] and len(variants) == 2 * 10
    for case in result['families']:
        chebyshev = next(c for c in result['families']
                         if c['variant'] == 'chebyshev' and c['shape'] == case['shape'])
        assert case['fwd_bwd_vs_chebyshev'] == pytest.approx(
            case['fwd_bwd_ms'] / chebyshev['fwd_bwd_ms'], rel=0.01, abs=1e-3)
