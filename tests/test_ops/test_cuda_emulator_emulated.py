"""The SIMT emulator itself: warp shuffles, shared memory, the last-block-done protocol under
shuffled block orders, the approximate instructions, what it refuses, its build key."""
import dataclasses
import math
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmrkan.testing import cuda_emulation as emu

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(emu.CSRC)))


def test_emulated_shuffle_down_and_warp_sum():
    out = emu.run_probe('shuffle').view(64, 6)
    for t in range(64):
        lane = t % 32
        for i, delta in enumerate((16, 8, 4, 2, 1)):
            # Lanes past the end of the warp keep their own value.
            expected = t + delta if lane + delta < 32 else t
            assert out[t, i] == expected, (t, delta)
    for warp_first in (0, 32):
        assert out[warp_first, 5] == sum(range(warp_first, warp_first + 32))


def test_emulated_shuffle_xor_and_butterfly_sum():
    out = emu.run_probe('shuffle_xor').view(64, 6)
    for t in range(64):
        for i, mask in enumerate((16, 8, 4, 2, 1)):
            assert out[t, i] == t ^ mask, (t, mask)  # stays inside the warp: mask < 32
        # Every lane of the warp holds the sum.
        assert out[t, 5] == sum(range(t // 32 * 32, t // 32 * 32 + 32))


@pytest.mark.parametrize('block_order', [0, 1, 2, 3])
def test_emulated_last_block_sums_every_partial(block_order):
    """The block that arrives last (its ticket is 7) sees all partials, whatever the order."""
    gpu = dataclasses.replace(emu.H200, block_order=block_order)
    out = emu.run_probe('last_block', gpu)
    tickets = out[2:10].long().tolist()
    assert sorted(tickets) == list(range(8))
    assert out[0] == sum(range(1, 9))
    assert out[1] == tickets.index(7)
    in_order = tickets == list(range(8))
    assert in_order == (block_order == 0), tickets


def test_emulated_block_orders_differ_and_are_reproducible():
    orders = [tuple(emu.run_probe('last_block', dataclasses.replace(emu.H200, block_order=seed))
                    [2:10].tolist()) for seed in (1, 2, 1)]
    assert orders[0] == orders[2] and orders[0] != orders[1]


FLT_MIN = float(np.finfo(np.float32).tiny)


def expected_approximation(exact: float, ulps: int) -> float:
    """An .approx.ftz result the emulator models: overflow to inf, denormal results flushed to 0,
    else the correctly rounded result moved `ulps` steps toward +inf."""
    if math.isinf(exact) or abs(exact) > float(np.finfo(np.float32).max):
        return math.copysign(math.inf, exact)
    if abs(exact) < FLT_MIN:
        return math.copysign(0.0, exact)
    value = np.float32(exact)
    for _ in range(ulps):
        value = np.nextafter(value, np.float32(np.inf))
    return float(value)


def test_emulated_approximate_instructions_within_their_bounds():
    """ex2.approx.ftz / rcp.approx.ftz: 2 and 1 ulp above the rounded result (the worst case the
    PTX ISA allows, so the kernels' tolerances are tested against it), denormals flushed."""
    out = emu.run_probe('approx')
    inputs, exp2, reciprocal = out[:8].tolist(), out[8:16].tolist(), out[16:].tolist()
    assert inputs[5] != 0 and abs(inputs[5]) < FLT_MIN  # the probe's denormal input
    for x, got_exp2, got_reciprocal in zip(inputs, exp2, reciprocal):
        flushed = math.copysign(0.0, x) if abs(x) < FLT_MIN else x
        exact_exp2 = 2.0**flushed if flushed < 1024 else math.inf
        exact_reciprocal = (math.copysign(math.inf, flushed) if flushed == 0 else 1.0 / flushed)
        assert got_exp2 == expected_approximation(exact_exp2, 2), x
        assert got_reciprocal == expected_approximation(exact_reciprocal, 1), x
    assert exp2[5] == exp2[0] and reciprocal[5] == math.inf  # the denormal input counts as 0
    assert reciprocal[4] == 0.0  # 1 / 1e38 is a denormal: flushed


def test_emulated_shared_memory_is_per_block():
    out = emu.run_probe('shared_memory').view(3, 2, 64)
    for block in range(3):
        for t in range(64):
            source = (t + 1) % 64
            assert out[block, 0, t] == 1000 * block + source
            assert out[block, 1, t] == -1000 * block - source


def test_emulated_unwritten_shared_memory_reads_nan():
    assert emu.run_probe('unwritten_shared').isnan().all()


@pytest.mark.parametrize('grid,block,smem,match', [
    ((1, 1, 1), (1025, 1, 1), 0, r'block.x = 1025 is outside \[1, 1024\]'),
    ((1, 1, 1), (32, 32, 2), 0, 'a block of 2048 threads is over the limit of 1024'),
    ((1, 1, 1), (1, 1, 65), 0, r'block.z = 65 is outside \[1, 64\]'),
    ((1, 65536, 1), (32, 1, 1), 0, r'grid.y = 65536 is outside \[1, 65535\]'),
    ((1, 1, 65536), (32, 1, 1), 0, r'grid.z = 65536 is outside \[1, 65535\]'),
    ((0, 1, 1), (32, 1, 1), 0, r'grid.x = 0 is outside'),
    ((1, 1, 1), (32, 1, 1), 48 * 1024 + 1, 'dynamic shared memory are over the per-block limit'),
], ids=['block_x', 'block_threads', 'block_z', 'grid_y', 'grid_z', 'empty_grid', 'smem'])
def test_emulated_launch_limits_raise(grid, block, smem, match):
    with pytest.raises(RuntimeError, match=match):
        emu.launch_empty_kernel(grid, block, smem)


def test_emulated_launch_within_limits_runs():
    emu.launch_empty_kernel((1, 65535, 1), (1, 1, 1))
    emu.launch_empty_kernel((1, 1, 1), (1024, 1, 1), 48 * 1024)


@pytest.mark.parametrize('probe,match', [
    ('misaligned_vector', 'misaligned address: 16-byte vector load'),
    ('partial_mask', 'mask 0xffff: the emulator supports only the full-warp mask'),
    ('partial_warp', 'full mask in a warp of 16 threads'),
    ('divergent_barrier', 'deadlock in block .*16 at __syncthreads.*48 returned from the kernel'),
    ('large_shared', r'16384 bytes dynamic \+ at least 40960 bytes of __shared__ arrays are over'),
])
def test_emulated_faults_raise(probe, match):
    with pytest.raises(RuntimeError, match=match):
        emu.run_probe(probe)


def test_emulated_unknown_probe_names_the_choices():
    with pytest.raises(ValueError, match="probe='nope' is not a probe kernel; allowed: .*shuffle"):
        emu.run_probe('nope')


def test_emulated_build_key_follows_every_source(tmp_path, monkeypatch):
    """The build is rebuilt exactly when a kernel, launcher or emulator source changes."""
    csrc = tmp_path / 'csrc'
    shutil.copytree(emu.CSRC, csrc)
    monkeypatch.setattr(emu, 'CSRC', str(csrc))
    key = emu.build_key(tsan=False)
    assert emu.build_key(tsan=True) != key
    (csrc / 'cpu' / 'group_rational_cpu.cpp').write_text('// not compiled by the emulation\n')
    assert emu.build_key(tsan=False) == key
    for source in ('common/cuda/kan_common_kernel.cuh', 'cuda/kan_conv2d_launcher.h',
                   'emulation/simt.cpp', 'kan_ops.h'):
        path = csrc / source
        path.write_text(path.read_text().replace('+=', '-=', 1) + ' ')
        changed = emu.build_key(tsan=False)
        assert changed != key, source
        key = changed


def test_emulated_tsan_switch_is_validated(monkeypatch):
    monkeypatch.setenv(emu.TSAN_ENV, 'yes')
    with pytest.raises(ValueError, match="MMRKAN_EMULATION_TSAN='yes' is not supported"):
        emu.tsan_enabled()


@pytest.mark.skipif(not emu.tsan_enabled(), reason=f'{emu.TSAN_ENV}=1 only (ThreadSanitizer)')
def test_emulated_tsan_reports_a_planted_race():
    """Under ThreadSanitizer, a kernel without its __syncthreads() is reported as a data race."""
    code = ('from mmrkan.testing import cuda_emulation as emu; '
            'emu.run_probe("racy_shared")')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=dict(os.environ), cwd=REPO_ROOT, timeout=600)
    assert 'WARNING: ThreadSanitizer: data race' in result.stderr, result.stderr[-3000:]
    assert 'racy_shared_kernel' in result.stderr
