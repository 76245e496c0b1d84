"""The arithmetic of benchmarks/kernel_report.py (the build and cuobjdump need nvcc: not here):
sm_90 occupancy, loops and their roles from SASS, the instruction charge, the loop trip counts."""
import importlib.util
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'kernel_report', osp.join(REPO, 'benchmarks', 'kernel_report.py'))
kernel_report = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = kernel_report  # dataclasses look their module up
spec.loader.exec_module(kernel_report)

# A kernel: set-up, a tile loop (a barrier, a store) holding a basis loop (shared stores, MUFU),
# a completion counter's atomic, then the last block's loop.
SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;                  /* 0x00000a0000017a02 */
        /*0010*/                   S2R R0, SR_TID.X ;
        /*0020*/                   LDG.E R2, desc[UR4][R4.64] ;
        /*0030*/                   STS.128 [R3], R4 ;
        /*0040*/                   MUFU.EX2 R2, R2 ;
        /*0050*/               @P0 BRA 0x30 ;                          /* 0xfffffffc00f40947 */
        /*0060*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0070*/                   STG.E desc[UR4][R4.64], R2 ;
        /*0080*/               @P1 BRA 0x20 ;
        /*0090*/                   ATOMG.E.ADD.STRONG.GPU PT, R6, [R8.64], R9 ;
        /*00a0*/                   LDG.E.STRONG.GPU R2, desc[UR4][R4.64] ;
        /*00b0*/              @!P2 BRA 0xa0 ;
        /*00c0*/                   EXIT ;
        /*00d0*/                   BRA 0xd0;
"""


def make_kernel():
    kernel = kernel_report.Kernel('k', name='k')
    kernel.sass = kernel_report.parse_sass(SASS)
    kernel.loops = kernel_report.find_loops(kernel.sass)
    return kernel


def test_parse_sass():
    sass = kernel_report.parse_sass(SASS)
    assert len(sass) == 14  # the self-branch after EXIT too
    assert sass[5] == (0x50, '@P0', 'BRA', 0x30)
    assert sass[9] == (0x90, '', 'ATOMG.E.ADD.STRONG.GPU', None)
    assert sass[11][1:] == ('@!P2', 'BRA', 0xa0)


def test_ftz_count_counts_flushing_arithmetic_only():
    kernel = kernel_report.Kernel('k', name='k', sass=kernel_report.parse_sass("""
        /*0000*/                   FADD.FTZ R1, R2, R3 ;
        /*0010*/                   FFMA.FTZ R1, R2, R3, R4 ;
        /*0020*/                   FSETP.GE.FTZ.AND P0, PT, R1, RZ, PT ;
        /*0030*/                   FADD R1, R2, R3 ;
        /*0040*/                   MUFU.RCP R1, R2 ;
        /*0050*/                   F2I.FTZ.U32.TRUNC.NTZ R1, R2 ;
"""))
    assert kernel_report.ftz_count(kernel) == 3


@pytest.mark.parametrize('registers,smem,blocks,fraction', [
    (32, 0, 8, 1.0), (33, 0, 6, 0.75), (64, 0, 4, 0.5), (65, 0, 3, 0.375), (80, 0, 3, 0.375), (128, 0, 2, 0.25),
    (255, 0, 1, 0.125), (40, 40 * 1024, 5, 0.625), (32, 45 * 1024, 4, 0.5),
    (40, 56 * 1024, 4, 0.5)])
def test_occupancy_from_registers_and_shared_memory(registers, smem, blocks, fraction):
    assert kernel_report.occupancy(registers, smem) == (blocks, fraction)


def test_loops_roles_and_charge():
    kernel = make_kernel()
    tile, inner, last = sorted(kernel.loops, key=lambda loop: loop['head'])
    assert (tile['depth'], inner['depth'], last['depth']) == (0, 1, 0)
    assert tile['children'] == [inner] and tile['has_barrier']
    assert (tile['count'], inner['count'], last['count']) == (4, 3, 2)
    assert kernel_report.role(inner) == 'basis'
    # 2 blocks of 5 tiles, 3 basis iterations a tile; the last block's loop 7 times. Straight
    # code: 2 instructions before the atomic (every block), 3 from it on (once).
    total = kernel_report.charge(kernel, blocks=2, main_trips=5, inner_trips=dict(basis=3),
                                 final_runs=7)
    assert total == 2 * 2 + 3 + (4 + 3 * 3) * 5 * 2 + 2 * 7
    with pytest.raises(SystemExit, match='a basis loop inside a main loop'):
        kernel_report.charge(kernel, 2, 5, dict(taps=3), 7)


def test_trip_counts_per_warp():
    # for (i = threadIdx.x; i < 405; i += 256): warps 0-4 run twice, 5-7 once.
    assert kernel_report.flat_loop_trips(405) == (5 * 2 + 3 * 1) / 8
    # 75 window rows, pitch 16: warp w starts at row 2 w, steps of 16 rows.
    assert kernel_report.window_trips(75, 16) == (6 * 5 + 2 * 4) / 8
    plan = dict(win_pitch=16, planes_per_step=1, win_h=15, tile_planes=5)
    # Rows 0..14 of 5 planes, one plane a step; row 15 (the last lane pair of warp 7) idles.
    assert kernel_report.window_trips_by_plane(plan) == 5


def test_bytes_per_output():
    conv = dict(op='kan_conv2d', shape=(1, 1, 4, 4), functions=4, stride=2, dtype='fp32')
    # 16 inputs, 4 outputs: forward x (4 per output) and y; backward grad_out, x and grad_x.
    assert kernel_report.bytes_per_output(conv, backward=False) == 4 * (4 + 1)
    assert kernel_report.bytes_per_output(conv, backward=True) == 4 * (1 + 2 * 4)
    rational = dict(op='group_rational', shape=(10, 16), groups=2, dtype='bf16', name='t')
    assert kernel_report.bytes_per_output(rational, backward=False) == 2 * 2
    assert kernel_report.bytes_per_output(rational, backward=True) == 2 * 3


def test_h200_estimate_takes_the_slower_of_issue_and_memory():
    case = dict(op='group_rational', shape=(48000, 100), groups=4, dtype='bf16', name='t')
    # 4.8e6 elements: 4 and 6 bytes each at 4.8 TB/s take 4 and 6 us. The forward's 10
    # warp-instructions per 32 outputs issue in 1.4 us (memory-bound), the backward's 100 in
    # 14.3 us (instruction-bound).
    issue_us = 100 * 4.8e6 / 32 / (132 * 4 * 1.98e9) * 1e6
    estimate = kernel_report.h200_estimate(case, forward_per_32=10, backward_per_32=100)
    assert estimate['roofline_microseconds'] == pytest.approx(10.0)
    assert estimate['microseconds'] == pytest.approx(4 + issue_us, abs=0.05)
    assert estimate['over_roofline'] == pytest.approx((4 + issue_us) / 10, abs=0.005)


def test_case_names_are_unique():
    """Cases differing only in the rational order get their own rows (and estimates)."""
    names = [kernel_report.case_name(case)
             for case in kernel_report.RKAN_CASES + kernel_report.KAT_CASES]
    assert len(set(names)) == len(names)
    assert any(name.endswith('order (7, 6)') for name in names)
