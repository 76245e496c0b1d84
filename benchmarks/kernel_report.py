"""Static report of mmrkan's CUDA kernels as compiled for sm_90 (no GPU needed).

Builds the CUDA sources as ``tools/check_cuda_build.sh`` does (nvcc, sm_90, ``-Xptxas -v``) and
prints, per kernel instantiation: registers, stack, spill bytes, static shared memory and the
theoretical sm_90 occupancy computed from them; then, per op at the RKAN and KAT default shapes,
the dynamic shared memory, occupancy and SASS instructions issued per output. With
``--baseline-tree`` the same is done for another checkout (e.g. commit 8830666) and the ratios
are printed side by side.

    .venv/bin/python benchmarks/kernel_report.py [--baseline-tree /tmp/before] [--json FILE]

SASS instructions per output (how): ``cuobjdump -sass`` of the built objects is split into
functions; every backward branch defines a loop (head = branch target, end = branch), nested by
address ranges. A loop body's count is every instruction between its head and its end outside
nested loops: what a warp issues per iteration when it goes through every path (exact for
branch-free bodies; an upper bound where lanes or iterations skip code). Each loop is given a
role by what it contains (the tile/row loop holds the barriers or the global loads and stores, the
basis loop the MUFU/128-bit shared stores, ...) and a trip count from the launch plan of the case
(the current tree's plans through ``mmrkan.testing.cuda_emulation``; the 8830666 plans, which
followed an H200's SM count and occupancy, re-derived below). Instructions outside the loops
count once per block; loops after the main loop (the backward's final sums) are charged once per
launch at their worst trip count. The figure is

    warp-instructions per 32 outputs = sum over launches and blocks of thread instructions
                                       x threads per block / outputs

(the thread-instructions of one output when every lane of a warp is busy).

The last table is an estimate for an H200, not a measurement: per case, the time to issue those
instructions (132 SMs x 4 warp-instructions per clock at 1.98 GHz, no stalls) or to move the op's
bytes at 4.8 TB/s, whichever is longer, forward plus backward, over the time a reference op moving
the same bytes (a depthwise 3x3 convolution for kan_conv2d, GELU for group_rational) takes at
that bandwidth: its memory roofline. 1.0 means as fast as the reference can possibly be.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# sm_90 (CUDA C++ Programming Guide, compute capability 9.0): per SM.
SM90 = dict(registers=65536, max_warps=64, max_blocks=32, smem=233472, reserved_smem=1024,
            register_unit=256, smem_unit=128, sms=132)
THREADS = 256

# The default shapes: RKANet-50's stage-4 KAN conv input (batch 128) and KAT-S / KATDet tokens.
RKAN_CASES = [dict(op='kan_conv2d', shape=(128, 512, 14, 14), functions=k, stride=s, dtype=d)
              for k in (4, 3) for s in (2, 1) for d in ('fp32', 'bf16')]
KAT_CASES = [dict(op='group_rational', shape=(128 * 197, 1536), groups=8, dtype=d,
                  name='KAT-S mlp') for d in ('fp32', 'bf16')]
KAT_CASES += [dict(op='group_rational', shape=(128 * 197, 384), groups=8, dtype='bf16',
                   name='KAT-S embed'),
              dict(op='group_rational', shape=(8192, 768), groups=8, dtype='bf16',
                   name='KATDet-B')]
# The other orders (m, n) of the KAT paper's ablation, each its own kernels; a case without
# `order` runs KAT's.
DEFAULT_ORDER = (5, 4)
KAT_CASES += [dict(op='group_rational', shape=(128 * 197, 1536), groups=8, dtype='bf16',
                   name='KAT-S mlp', order=order) for order in ((3, 2), (7, 6))]
# H200 (SXM): HBM3e bandwidth, and the SASS issue rate of 132 SMs x 4 schedulers at 1.98 GHz.
H200 = dict(bytes_per_s=4.8e12, warp_instructions_per_s=132 * 4 * 1.98e9)
CPP_TYPES = {'fp32': 'float', 'bf16': 'BFloat16', 'fp16': 'Half', 'fp64': 'double'}
ELEMENT_BYTES = {'fp32': 4, 'bf16': 2, 'fp16': 2, 'fp64': 8}


# ---- building and reading the module -----------------------------------------------------------

def find_tool(name: str) -> str:
    """$CUDA_HOME/bin first, then the copy triton ships (this machine's toolkit has none)."""
    candidates = [osp.join(os.environ.get('CUDA_HOME', '/usr/local/cuda'), 'bin', name)]
    try:
        import triton
        candidates.append(osp.join(osp.dirname(triton.__file__), 'backends', 'nvidia', 'bin', name))
    except ImportError:
        pass
    for candidate in candidates + [shutil.which(name) or '']:
        if candidate and osp.exists(candidate):
            return candidate
    sys.exit(f'{name} not found in {candidates}: install the CUDA toolkit or triton')


def build(tree: str, directory: str, python: str) -> Tuple[str, List[str], float]:
    """Runs tools/check_cuda_build.sh on `tree`; returns its log, the CUDA objects, seconds."""
    env = dict(os.environ, MMRKAN_CUDA_BUILD_KEEP=directory, MMRKAN_CUDA_BUILD_SOURCE=tree)
    start = time.time()
    result = subprocess.run(['bash', osp.join(REPO, 'tools', 'check_cuda_build.sh'), python],
                            env=env, capture_output=True, text=True)
    seconds = time.time() - start
    sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f'the CUDA build of {tree} failed (exit {result.returncode})')
    objects = sorted(glob.glob(osp.join(directory, 'temp', '**', 'cuda', '*.o'), recursive=True))
    if not objects:
        sys.exit(f'no CUDA objects under {directory}/temp')
    # check_cuda_build.sh's own figure: the build alone, without the loading check.
    built = re.search(r'built in (\d+) s', result.stdout + result.stderr)
    seconds = float(built.group(1)) if built else seconds
    with open(osp.join(directory, 'build_seconds'), 'w') as f:
        f.write(f'{seconds:.0f}')
    return osp.join(directory, 'build.log'), objects, seconds


def demangle(names: List[str]) -> List[str]:
    out = subprocess.run(['c++filt'], input='\n'.join(names), capture_output=True, text=True,
                         check=True).stdout.split('\n')
    return [re.sub(r'^void |\(.*$|mmrkan::cuda::|c10::', '', name) for name in out[:len(names)]]


@dataclass
class Kernel:
    mangled: str
    name: str = ''
    registers: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    static_smem: int = 0
    sass: List[Tuple[int, str, str, Optional[int]]] = field(default_factory=list)
    loops: List[Dict] = field(default_factory=list)


def read_ptxas(log: str) -> Dict[str, Kernel]:
    kernels = {}
    text = open(log).read()
    pattern = (r"Compiling entry function '(\S+)' for 'sm_90'\n(.*?)Used (\d+) registers"
               r"[^\n]*?(?:(\d+) bytes smem)?\n")
    for m in re.finditer(pattern, text, re.S):
        mangled, details, registers, smem = m.groups()
        kernel = Kernel(mangled, registers=int(registers), static_smem=int(smem or 0))
        spills = re.search(r'(\d+) bytes stack frame, (\d+) bytes spill stores, '
                           r'(\d+) bytes spill loads', details)
        if spills:
            kernel.stack, kernel.spill_stores, kernel.spill_loads = map(int, spills.groups())
        kernels[mangled] = kernel
    for kernel, name in zip(kernels.values(), demangle(list(kernels))):
        kernel.name = name
    return kernels


SASS_LINE = re.compile(r'/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)([^;]*);')


def read_sass(objects: List[str], kernels: Dict[str, Kernel]) -> None:
    cuobjdump = find_tool('cuobjdump')
    for obj in objects:
        text = subprocess.run([cuobjdump, '-sass', obj], capture_output=True, text=True,
                              check=True).stdout
        for chunk in re.split(r'\n\s*Function : ', text)[1:]:
            mangled = chunk.split('\n', 1)[0].strip()
            if mangled not in kernels:
                continue
            kernels[mangled].sass = parse_sass(chunk)
            kernels[mangled].loops = find_loops(kernels[mangled].sass)


def parse_sass(text: str) -> List[Tuple[int, str, str, Optional[int]]]:
    """(address, predicate, opcode, branch target or None) of each instruction of a function."""
    sass = []
    for m in SASS_LINE.finditer(text):
        target = None
        if m.group(3).split('.')[0] == 'BRA':
            t = re.search(r'0x([0-9a-f]+)', m.group(4))
            target = int(t.group(1), 16) if t else None
        sass.append((int(m.group(1), 16), (m.group(2) or '').strip(), m.group(3), target))
    return sass


def find_loops(sass) -> List[Dict]:
    """Loops from backward branches: head, end (indices), body count outside nested loops,
    nesting and what the body holds (for the roles)."""
    index = {addr: i for i, (addr, *_) in enumerate(sass)}
    ends: Dict[int, int] = {}
    for i, (addr, _, op, target) in enumerate(sass):
        if target is not None and target < addr:
            head = index[target]
            ends[head] = max(ends.get(head, i), i)
    spans = sorted(ends.items())
    loops = []
    for head, end in spans:
        parent = min((s for s in spans if s[0] <= head and end <= s[1] and s != (head, end)),
                     key=lambda s: s[1] - s[0], default=None)
        loops.append(dict(head=head, end=end, parent=parent, children=[]))
    by_span = {(l['head'], l['end']): l for l in loops}
    for loop in loops:
        if loop['parent'] is not None:
            by_span[loop['parent']]['children'].append(loop)
    for loop in loops:
        nested = set()
        for child in loop['children']:
            nested.update(range(child['head'], child['end'] + 1))
        body = [sass[i][2] for i in range(loop['head'], loop['end'] + 1) if i not in nested]
        everything = [sass[i][2] for i in range(loop['head'], loop['end'] + 1)]
        loop.update(count=len(body), depth=0,
                    has_barrier=any(op.startswith('BAR') for op in everything),
                    has_mufu=any(op.startswith('MUFU') for op in body),
                    has_sts128=any(op.startswith('STS.128') for op in body),
                    has_sts=any(op.startswith('STS') for op in body),
                    has_stg=any(op.startswith('STG') for op in body),
                    has_ldg=any(op.startswith('LDG') for op in body))
    for loop in loops:
        parent = loop['parent']
        while parent is not None:
            loop['depth'] += 1
            parent = by_span[parent]['parent']
    return loops


def ftz_count(kernel: Kernel) -> int:
    """fp32 arithmetic and comparisons that flush denormals (FADD/FMUL/FFMA/FSETP/FMNMX .FTZ;
    not the float-to-integer conversions of integer divisions, nor the MUFU approximations,
    whose flushing docs/ops.md describes)."""
    return sum(1 for _, _, op, _ in kernel.sass
               if '.FTZ' in op and op.split('.')[0] in ('FADD', 'FMUL', 'FFMA', 'FSETP', 'FMNMX'))


# ---- occupancy ---------------------------------------------------------------------------------

def occupancy(registers: int, smem: int, threads: int = THREADS) -> Tuple[int, float]:
    """Resident blocks per sm_90 SM and the fraction of its 64 warps they fill."""
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(max(registers, 1) * 32 / SM90['register_unit']) * SM90['register_unit']
    by_registers = SM90['registers'] // (per_warp * warps)
    smem_per_block = math.ceil(smem / SM90['smem_unit']) * SM90['smem_unit'] + SM90['reserved_smem']
    by_smem = SM90['smem'] // smem_per_block
    blocks = min(SM90['max_blocks'], SM90['max_warps'] // warps, by_registers, by_smem)
    return blocks, blocks * warps / SM90['max_warps']


# ---- which kernels a case runs, and their loop trips -------------------------------------------

def find_kernel(kernels: Dict[str, Kernel], pattern: str) -> Kernel:
    matches = [k for k in kernels.values() if re.fullmatch(pattern, k.name)]
    if len(matches) != 1:
        sys.exit(f'{len(matches)} kernels match {pattern!r}: the report does not know this tree')
    return matches[0]


def subtree(loop: Dict) -> int:
    return loop['count'] + sum(subtree(c) for c in loop['children'])


def role(loop: Dict) -> str:
    """What a loop inside a main loop does, from what its body holds."""
    if loop['has_sts'] and (loop['has_mufu'] or loop['has_sts128']):
        return 'basis'  # features of window positions into shared memory
    if loop['has_stg'] or loop['has_mufu']:
        return 'cells'  # gradients at input positions (dx, weight-gradient terms)
    if loop['has_sts']:
        return 'grad_out'  # a grad_out tile into shared memory
    if loop['has_barrier']:
        return 'tree'  # a block reduction step
    return 'taps'  # a row of taps of an output strip


def charge(kernel: Kernel, blocks: int, main_trips: float, inner_trips: Dict[str, float],
           final_runs: float) -> float:
    """Instructions of one thread, summed over the launch's blocks (times the threads per block:
    the launch's thread-instructions). The main loops are the top-level loops with barriers (the
    tile loops) before the completion counter's atomic, or else the largest loop with the
    elementwise maths (MUFU) or global stores; main_trips: their iterations per
    block; inner_trips: iterations of their child loops per main iteration, by role; loops
    before the main loops run once per block, loops after them final_runs times per launch."""
    top = [l for l in kernel.loops if l['depth'] == 0]
    # Code after the completion counter's atomic is the last block's.
    atomic = next((i for i, (_, _, op, _) in enumerate(kernel.sass)
                   if op.startswith(('ATOMG', 'RED', 'ATOM.'))), len(kernel.sass))
    before = [l for l in top if l['head'] < atomic]
    mains = [l for l in before if l['has_barrier']]
    if not mains:
        mains = [max(before, key=lambda l: (l['has_mufu'], l['has_stg'], l['count']))]
    first = min(l['head'] for l in mains)
    in_loops = set()
    for loop in top:
        in_loops.update(range(loop['head'], loop['end'] + 1))
    straight = [i for i in range(len(kernel.sass)) if i not in in_loops]
    # Straight code: every block's before the atomic, the last block's after it.
    total = sum(1 for i in straight if i < atomic) * blocks + sum(1 for i in straight if i >= atomic)
    for loop in top:
        if loop in mains:
            per_iteration = loop['count']
            by_role: Dict[str, List[Dict]] = {}
            for child in loop['children']:
                by_role.setdefault(role(child), []).append(child)
            for name, children in by_role.items():
                if name not in inner_trips:
                    sys.exit(f"{kernel.name}: a {name} loop inside a main loop; the trip model "
                             f"knows {sorted(inner_trips)}")
                trips = inner_trips[name]
                if not isinstance(trips, list):  # the same trips for every loop of the role
                    trips = [trips] * len(children)
                if len(trips) != len(children):
                    sys.exit(f'{kernel.name}: {len(children)} {name} loops, the model has trips '
                             f'for {len(trips)}')
                # Alternatives of one role (a fast and a general path) by body size, smaller first.
                for child, count in zip(sorted(children, key=subtree), trips):
                    per_iteration += subtree(child) * count
            total += per_iteration * main_trips * blocks
        elif loop['head'] < first:
            total += subtree(loop) * blocks
        else:
            total += subtree(loop) * final_runs
    return total


def flat_loop_trips(count: int) -> float:
    """Average iterations per warp of `for (i = threadIdx.x; i < count; i += 256)`: a warp runs
    as long as its first lane does."""
    return sum(max(0, math.ceil((count - 32 * w) / THREADS)) for w in range(8)) / 8


def window_trips(rows: int, pitch: int) -> float:
    """Average iterations per warp of the window loop: thread t fills rows t / pitch, + 256 /
    pitch, ... below `rows`."""
    step = THREADS // pitch
    return sum(max(0, math.ceil((rows - (32 * w) // pitch) / step)) for w in range(8)) / 8


def window_trips_by_plane(plan: Dict) -> float:
    """Average iterations per warp of the window loop's path for whole small planes: thread t
    keeps row r = t / pitch (if r < planes_per_step win_h) and steps over the tile's planes from
    r / win_h, planes_per_step at a time."""
    pitch, per_step, win_h = plan['win_pitch'], plan['planes_per_step'], plan['win_h']
    total = 0
    for w in range(8):
        rows = [t // pitch for t in range(32 * w, 32 * w + 32)]
        trips = [math.ceil((plan['tile_planes'] - r // win_h) / per_step)
                 for r in rows if r < per_step * win_h]
        total += max(trips, default=0)
    return total / 8


def current_plan(case: Dict, backward: bool) -> Dict:
    import torch
    from mmrkan.testing import cuda_emulation as emu
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}[case['dtype']]
    x = torch.empty(case['shape'], dtype=dtype, device='meta')
    if case['op'] == 'kan_conv2d':
        poly = torch.empty(9, case['functions'], dtype=torch.float32, device='meta')
        return emu.kan_conv2d_plan(x, poly, case['stride'], 0, backward)
    m, n = case.get('order', DEFAULT_ORDER)
    numerator = torch.empty(1, m + 1, device='meta')
    denominator = torch.empty(case['groups'], n, device='meta')
    return emu.group_rational_plan(x, numerator, denominator)


def outputs_of(case: Dict) -> int:
    if case['op'] == 'group_rational':
        return case['shape'][0] * case['shape'][1]
    n, c, h, w = case['shape']
    return n * c * ((h - 1) // case['stride'] + 1) * ((w - 1) // case['stride'] + 1)


def current_launches(case: Dict, kernels: Dict[str, Kernel], backward: bool):
    """(kernel, dynamic smem, thread-instructions) of each launch the current tree makes."""
    scalar = re.escape(CPP_TYPES[case['dtype']])
    plan = current_plan(case, backward)
    direction = 'backward' if backward else 'forward'
    if case['op'] == 'kan_conv2d':
        basis = (f"ChebyshevBasis<{case['functions']}>" if plan['specialised']
                 else 'RuntimeBasis')
        kernel = find_kernel(kernels, rf"kan_conv2d_{direction}_kernel<{scalar}, float, {basis}, "
                                      rf"{case['stride']}, {plan['strip']}>")
        blocks = plan['blocks']
        sums = 9 * plan['stored_features'] + 1
        inner = dict(grad_out=flat_loop_trips(plan['dy_count']), cells=plan['strip'], taps=3)
        if not backward:
            # The window loop has a path for whole small planes (planes_per_step > 0, the
            # smaller loop) and a general one.
            whole = window_trips_by_plane(plan) if plan['planes_per_step'] else 0
            general = 0 if plan['planes_per_step'] else window_trips(plan['window_rows'],
                                                                      plan['win_pitch'])
            inner['basis'] = [whole, general]
        total = charge(kernel, blocks, plan['num_tiles'] / blocks, inner,
                       math.ceil(sums / 8) * math.ceil(blocks / 32))
        return [(kernel, plan['smem_bytes'], total * THREADS)]
    m, n = case.get('order', DEFAULT_ORDER)
    kernel = find_kernel(kernels, rf"group_rational_{direction}_kernel<{scalar}, float, "
                                  rf"RationalOrder<{m}, {n}>, {plan['vec']}>")
    blocks = plan['num_blocks']
    rows_at_once = 1 if plan['vec'] > 4 and backward else 2
    total = charge(kernel, blocks, plan['passes'] / rows_at_once, {},
                   math.ceil((m + 1 + n * case['groups']) / 8) * math.ceil(blocks / 32))
    return [(kernel, 0, total * THREADS)]


# The 8830666 plans: one wave of resident blocks of an H200 (132 SMs x the kernel's occupancy).

def baseline_conv_geometry(case: Dict) -> Dict:
    def balanced(n, cap):
        return math.ceil(n / math.ceil(n / cap))
    n, c, h, w = case['shape']
    s = case['stride']
    out_h, out_w = (h - 1) // s + 1, (w - 1) // s + 1
    tile_w = balanced(out_w, 32)
    tile_h = balanced(out_h, max(1, THREADS // tile_w))
    whole = (tile_h, tile_w) == (out_h, out_w)
    tile_planes = min(n * c, THREADS // (tile_h * tile_w)) if whole else 1
    tiles = math.ceil(n * c / tile_planes) * math.ceil(out_h / tile_h) * math.ceil(out_w / tile_w)
    return dict(tile_planes=tile_planes, tile_h=tile_h, tile_w=tile_w, tiles=tiles,
                window=tile_planes * ((tile_h - 1) * s + 3) * ((tile_w - 1) * s + 3),
                dy=tile_planes * (tile_h + 2) * (tile_w + 2),
                owned=tile_planes * (tile_h * s + 2) * (tile_w * s + 2))


def baseline_reduce(kernels, partial_rows: int, rows: int, row_cols: int, count: int) -> float:
    kernel = find_kernel(kernels, r'reduce_partials_kernel<float>')
    blocks = rows * count
    return charge(kernel, blocks, flat_loop_trips(partial_rows * row_cols), {}, blocks) * THREADS


def baseline_launches(case: Dict, kernels: Dict[str, Kernel], backward: bool):
    scalar = re.escape(CPP_TYPES[case['dtype']])
    direction = 'backward' if backward else 'forward'
    if case['op'] == 'kan_conv2d':
        geo = baseline_conv_geometry(case)
        kernel = find_kernel(kernels, rf"kan_conv2d_{direction}_kernel<{scalar}, float, "
                                      rf"{case['functions']}>")
        smem = 4 * (geo['dy'] if backward else 9 * geo['tile_planes'] * geo['tile_h'] *
                    geo['tile_w'])
        resident, _ = occupancy(kernel.registers, kernel.static_smem + smem)
        blocks = min(geo['tiles'], resident * SM90['sms'])
        inner = dict(basis=flat_loop_trips(geo['window']), cells=flat_loop_trips(geo['owned']),
                     grad_out=flat_loop_trips(geo['dy']))
        total = charge(kernel, blocks, geo['tiles'] / blocks, inner, blocks) * THREADS
        launches = [(kernel, smem, total)]
        if backward:
            launches.append((find_kernel(kernels, r'reduce_partials_kernel<float>'), 0,
                             baseline_reduce(kernels, blocks, 1, 1, 9 * (case['functions'] + 1))))
        return launches
    rows, channels = case['shape']
    vec = 16 // ELEMENT_BYTES[case['dtype']]
    columns = channels // vec
    kernel = find_kernel(kernels, rf"group_rational_{direction}_kernel<{scalar}, float, {vec}>")
    block_x = 1
    while block_x < 32 and block_x < columns:
        block_x *= 2
    block_y = THREADS // block_x
    grid_x = math.ceil(columns / block_x)
    resident, _ = occupancy(kernel.registers, kernel.static_smem)
    grid_y = min(math.ceil(rows / block_y), max(1, resident * SM90['sms'] // grid_x), 65535)
    blocks = grid_x * grid_y
    row_trips = math.ceil(rows / (grid_y * block_y))
    # The row loop; in the backward the block's tree over threadIdx.y is a loop beside it.
    total = charge_rows_and_tree(kernel, blocks, row_trips, int(math.log2(block_y))) * THREADS
    if not backward:
        return [(kernel, 0, total)]
    groups = case['groups']
    return [(kernel, 0, total),
            (find_kernel(kernels, r'reduce_partials_kernel<float>'), 0,
             baseline_reduce(kernels, grid_y, 1, columns, 6)),
            (find_kernel(kernels, r'reduce_partials_kernel<float>'), 0,
             baseline_reduce(kernels, grid_y, groups, columns // groups, 4))]


def charge_rows_and_tree(kernel: Kernel, blocks: int, row_trips: int, tree_trips: int) -> float:
    """8830666's group_rational kernels: the row loop, and (backward) the block's tree loop."""
    top = [l for l in kernel.loops if l['depth'] == 0]
    rows = max((l for l in top if l['has_stg']), key=lambda l: l['count'])
    tree = [l for l in top if l['has_barrier'] and l is not rows]
    straight = len(kernel.sass) - sum(l['end'] - l['head'] + 1 for l in top)
    total = straight * blocks + subtree(rows) * row_trips * blocks
    total += sum(subtree(l) for l in tree) * tree_trips * blocks
    total += sum(subtree(l) for l in top if l is not rows and l not in tree) * blocks
    return total


# ---- H200 estimate -----------------------------------------------------------------------------

def bytes_per_output(case: Dict, backward: bool) -> float:
    """Bytes the op must move per output (x read once; the weights are negligible): forward x
    and y, backward grad_out, x and grad_x."""
    element = ELEMENT_BYTES[case['dtype']]
    if case['op'] == 'group_rational':
        return element * (3 if backward else 2)
    inputs_per_output = math.prod(case['shape']) / outputs_of(case)
    return element * (1 + inputs_per_output * (2 if backward else 1))


def h200_estimate(case: Dict, forward_per_32: float, backward_per_32: float) -> Dict:
    """Forward + backward microseconds on an H200 by the larger of instruction issue and memory
    time per direction, and that over the reference op's memory roofline (the same bytes)."""
    outputs = outputs_of(case)
    times = []
    memory_total = 0.0
    for per_32, backward in ((forward_per_32, False), (backward_per_32, True)):
        issue = per_32 * outputs / 32 / H200['warp_instructions_per_s']
        memory = bytes_per_output(case, backward) * outputs / H200['bytes_per_s']
        times.append(max(issue, memory))
        memory_total += memory
    return dict(microseconds=round(sum(times) * 1e6, 1),
                roofline_microseconds=round(memory_total * 1e6, 1),
                over_roofline=round(sum(times) / memory_total, 2))


def estimates(result: Dict) -> Dict[str, Dict]:
    by_case: Dict[str, Dict[str, float]] = {}
    for c in result['cases']:
        by_case.setdefault(c['case'], {})[c['direction']] = c['instructions_per_32_outputs']
    specs = {case_name(case): case for case in RKAN_CASES + KAT_CASES}
    return {name: h200_estimate(specs[name], per_32['forward'], per_32['backward'])
            for name, per_32 in by_case.items()}


# ---- report ------------------------------------------------------------------------------------

def report_tree(label: str, tree: str, python: str, baseline: bool, work: str,
                reuse: bool) -> Dict:
    directory = osp.join(work, label)
    if reuse:
        log = osp.join(directory, 'build.log')
        objects = sorted(glob.glob(osp.join(directory, 'temp', '**', 'cuda', '*.o'),
                                   recursive=True))
        timing = osp.join(directory, 'build_seconds')
        if not objects or not osp.exists(timing):
            sys.exit(f'--reuse: no finished build in {directory}')
        seconds = float(open(timing).read())
    else:
        log, objects, seconds = build(tree, directory, python)
    kernels = read_ptxas(log)
    read_sass(objects, kernels)
    launches_of = baseline_launches if baseline else current_launches
    cases = []
    for case in RKAN_CASES + KAT_CASES:
        if baseline and case.get('order', DEFAULT_ORDER) != DEFAULT_ORDER:
            continue  # 8830666 had the order (5, 4) only
        for backward in (False, True):
            launches = launches_of(case, kernels, backward)
            main, smem, _ = launches[0]
            _, occ = occupancy(main.registers, main.static_smem + smem)
            # Thread-instructions of all threads / outputs = warp-instructions per 32 outputs.
            per_32_outputs = sum(total for *_, total in launches) / outputs_of(case)
            cases.append(dict(case=case_name(case), direction='backward' if backward else 'forward',
                              kernel=main.name, launches=len(launches), registers=main.registers,
                              spill=main.spill_stores + main.spill_loads, dynamic_smem=smem,
                              static_smem=main.static_smem, occupancy=occ,
                              instructions_per_32_outputs=round(per_32_outputs, 1)))
    table = [dict(kernel=k.name, registers=k.registers, stack=k.stack, spill_stores=k.spill_stores,
                  spill_loads=k.spill_loads, static_smem=k.static_smem,
                  occupancy_static=occupancy(k.registers, k.static_smem)[1],
                  sass=len(k.sass), ftz=ftz_count(k))
             for k in sorted(kernels.values(), key=lambda k: k.name)]
    result = dict(label=label, tree=tree, build_seconds=round(seconds), kernels=table, cases=cases)
    result['estimates'] = estimates(result)
    return result


def case_name(case: Dict) -> str:
    if case['op'] == 'kan_conv2d':
        return (f"kan_conv2d {'x'.join(map(str, case['shape']))} K={case['functions']} "
                f"s={case['stride']} {case['dtype']}")
    order = case.get('order', DEFAULT_ORDER)
    return (f"group_rational {case['name']} {'x'.join(map(str, case['shape']))} {case['dtype']}"
            + ('' if order == DEFAULT_ORDER else f' order ({order[0]}, {order[1]})'))


def print_report(result: Dict, baseline: Optional[Dict]) -> None:
    print(f"\n## {result['label']}: {result['tree']} (built in {result['build_seconds']} s)\n")
    print('| kernel | registers | stack | spill st/ld B | static smem B | occupancy* | SASS | FTZ |')
    print('|---|---|---|---|---|---|---|---|')
    for k in result['kernels']:
        print(f"| {k['kernel']} | {k['registers']} | {k['stack']} | {k['spill_stores']}/"
              f"{k['spill_loads']} | {k['static_smem']} | {k['occupancy_static']:.1%} | "
              f"{k['sass']} | {k['ftz']} |")
    print('\n*: from registers and static shared memory only; the per-case table adds the '
          'dynamic shared memory.\n')
    header = '| case | direction | launches | registers | spill B | smem B (dyn+static) | ' \
             'occupancy | warp-instr / 32 outputs |'
    if baseline:
        header += ' 8830666 | fewer × |'
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    base = {(c['case'], c['direction']): c for c in (baseline or {}).get('cases', [])}
    for c in result['cases']:
        line = (f"| {c['case']} | {c['direction']} | {c['launches']} | {c['registers']} | "
                f"{c['spill']} | {c['dynamic_smem']}+{c['static_smem']} | {c['occupancy']:.1%} | "
                f"{c['instructions_per_32_outputs']:.0f} |")
        b = base.get((c['case'], c['direction']))
        if baseline and not b:
            line += ' – | – |'
        elif baseline:
            line += (f" {b['instructions_per_32_outputs']:.0f} ({b['launches']} launches, "
                     f"{b['registers']} regs, {b['occupancy']:.1%}) | "
                     f"{b['instructions_per_32_outputs'] / c['instructions_per_32_outputs']:.2f} |")
        print(line)
    print('\nH200 estimate (not measured), forward + backward: the larger of instruction issue and '
          'memory time per direction, over the memory roofline of a depthwise 3x3 convolution '
          '(kan_conv2d) or GELU (group_rational) moving the same bytes.\n')
    header = '| case | estimate µs | roofline µs | × roofline |'
    if baseline:
        header += ' 8830666 × roofline |'
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    for name, e in result['estimates'].items():
        line = (f"| {name} | {e['microseconds']:.1f} | {e['roofline_microseconds']:.1f} | "
                f"{e['over_roofline']:.2f} |")
        if baseline:
            before = baseline['estimates'].get(name)
            line += f" {before['over_roofline']:.2f} |" if before else ' – |'
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', default=REPO, help='checkout to report (default: this one)')
    parser.add_argument('--baseline-tree', help='a checkout of 8830666 to compare with')
    parser.add_argument('--python', default=sys.executable)
    parser.add_argument('--json', help='also write the figures here')
    parser.add_argument('--work', help='keep the builds here (default: a temporary folder)')
    parser.add_argument('--reuse', action='store_true',
                        help='read the builds an earlier run left in --work instead of building')
    args = parser.parse_args()
    if args.reuse and not args.work:
        parser.error('--reuse needs --work')
    work = args.work or tempfile.mkdtemp(prefix='mmrkan-kernel-report.')
    try:
        baseline = (report_tree('8830666', osp.abspath(args.baseline_tree), args.python, True,
                                work, args.reuse) if args.baseline_tree else None)
        current = report_tree('current', osp.abspath(args.tree), args.python, False, work,
                              args.reuse)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if baseline:
        print_report(baseline, None)
    print_report(current, baseline)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(current=current, baseline=baseline), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
