"""The stages of ``tools/gpu_check.sh``: install, build, test, sanitize, benchmark, train.

Run by ``tools/gpu_check.sh`` (read its header); not meant to be called by hand. Each stage runs
as a subprocess with a time limit, in a copy of the source tree (the checkout is never written),
and its result goes into ``OUT_DIR/gpu_check.json`` as soon as it finishes; its output goes to
``OUT_DIR/gpu_check.log``. A failing stage never stops the next one; a stage that needs a failed
one is skipped, naming it. ``--mode gpu`` runs on the lent GPU machine within ``--budget``
seconds, the most important stages first; ``--mode rehearse`` runs, on a machine without a GPU,
each stage's CPU counterpart where it has one (GPU-only stages are recorded as skipped, their
CPU stand-in's result beside them). The last lines printed are a table: stage, result, figure.
"""
import argparse
import glob
import json
import os
import os.path as osp
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Left out of the copy of the tree (where the extension is built): environments, bundles, build
# outputs and data.
TOP_LEVEL_SKIPPED = {'.git', '.venv', '.gpu_bundle', '.whl', '.gl', 'build', 'work_dirs', 'data'}
SKIPPED_PATTERNS = ('__pycache__', '*.so', '*.egg-info', '.pytest_cache', '.mim')
SANITIZER_FILTER = ['--kernel-name', 'kns=mmrkan']  # instrument only our kernels: much faster
# Compiler and test-failure lines worth showing first when a stage fails.
ERROR_LINE = re.compile(r': (fatal )?error|errors? detected|^FAILED|^E  |Error:|ERROR')
IMPORT_CHECK = 'import mmengine, mmcv, mmcv.ops, mmdet, mmseg, mmpretrain; print(mmcv.__version__)'


@dataclass
class Stage:
    """One step of the check. ``command`` returns the argv for a mode; ``None``: no such step."""
    name: str
    command: Callable[[argparse.Namespace], Optional[List[str]]]
    limit: Dict[str, int]  # seconds, per mode
    gpu_only: bool = False
    needs: List[str] = field(default_factory=list)
    figures: Callable[[str, argparse.Namespace], Dict] = lambda output, args: {}
    env: Dict[str, str] = field(default_factory=dict)


def last_json_line(output: str) -> Dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith('{'):
            return json.loads(line)
    raise ValueError('the stage printed no JSON line')


def pytest_counts(output: str, args: argparse.Namespace) -> Dict:
    counts = {word: int(number) for number, word in
              re.findall(r'(\d+) (passed|failed|skipped|deselected|error|errors)\b', output)}
    return counts


def sanitizer_summary(output: str, args: argparse.Namespace) -> Dict:
    found = re.findall(r'(?:ERROR|RACECHECK) SUMMARY: (\d+) (?:errors|hazards)', output)
    return {'errors': int(found[-1])} if found else {}


def json_file(name: str) -> Callable[[str, argparse.Namespace], Dict]:
    def read(output: str, args: argparse.Namespace) -> Dict:
        with open(osp.join(args.work, f'{name}.json')) as f:
            return json.load(f)
    return read


def by_mode(gpu: Optional[List[str]], cpu: Optional[List[str]]) -> Callable:
    return lambda args: gpu if args.mode == 'gpu' else cpu


def python(*argv: str) -> List[str]:
    return [sys.executable, *argv]


def detector_stage(name: str, config: str) -> Stage:
    common = [config, '--data-root', '{work}/coco', '--json', f'{{work}}/{name}.json']
    return Stage(
        name,
        by_mode(python('tools/gpu_check/train_detector.py', *common, '--device', 'cuda',
                       '--iters', '40', '--require-falling'),
                python('tools/gpu_check/train_detector.py', *common, '--device', 'cpu',
                       '--iters', '4', '--min-side', '64')),
        limit=dict(gpu=120, rehearse=600), needs=['install', 'build_ext', 'coco_data'],
        figures=lambda output, args: {
            key: value for key, value in json_file(name)(output, args).items()
            if key in ('amp', 'iters', 'batch', 'seconds_per_iter', 'skipped_steps', 'finite',
                       'falling', 'first_quarter_mean', 'last_quarter_mean', 'peak_memory_gib',
                       'problems')})


def sanitizer_stage(tool: str) -> Stage:
    return Stage(
        f'sanitizer_{tool}',
        by_mode(['{sanitizer}', '--tool', tool, '--error-exitcode', '86', *SANITIZER_FILTER,
                 *python('tools/gpu_check/kernel_calls.py', '--device', 'cuda')],
                python('tools/gpu_check/kernel_calls.py', '--device', 'cpu')),
        limit=dict(gpu=120, rehearse=300), gpu_only=True, needs=['install', 'build_ext'],
        figures=sanitizer_summary,
        # One cudaMalloc per tensor: inside the caching allocator's blocks, memcheck cannot see
        # an access past a tensor's end.
        env=dict(PYTORCH_NO_CUDA_MEMORY_CACHING='1'))


def bench_ops_stage(dtype: str) -> Stage:
    return Stage(
        f'bench_ops_{dtype}',
        by_mode(python('benchmarks/bench_ops.py', '--device', 'cuda', '--dtype', dtype, '--json'),
                python('benchmarks/bench_ops.py', '--device', 'cpu', '--dtype', dtype, '--scale',
                       '0.002', '--warmup', '1', '--repeats', '2', '--json')),
        limit=dict(gpu=90, rehearse=300), needs=['install', 'build_ext'],
        figures=lambda output, args: last_json_line(output))


def bench_kat_stage(arch: str, batch: int) -> Stage:
    return Stage(
        f'train_kat_{arch}',
        by_mode(python('benchmarks/bench_kat.py', '--device', 'cuda', '--arch', arch, '--batch',
                       str(batch), '--amp', 'bf16', '--fit-batch', '--json'),
                python('benchmarks/bench_kat.py', '--device', 'cpu', '--arch', arch, '--batch',
                       '2', '--img-size', '32', '--amp', 'bf16', '--warmup', '1', '--steps', '2',
                       '--json')),
        limit=dict(gpu=120, rehearse=600), needs=['install', 'build_ext'],
        figures=lambda output, args: last_json_line(output))


STAGES = [
    Stage('install', lambda args: None, limit=dict(gpu=90, rehearse=300)),
    Stage('build_ext',
          lambda args: python('setup.py', 'build_ext', '--inplace'),
          limit=dict(gpu=300, rehearse=2400), needs=['install'],
          env=dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0')),
    Stage('op_tests',
          by_mode(python('-m', 'pytest', '-n', '0', '-q', 'tests/test_ops', '-k', 'cuda'),
                  python('-m', 'pytest', '-n', '0', '-q', 'tests/test_ops', '-k', 'not cuda')),
          limit=dict(gpu=120, rehearse=1200), needs=['install', 'build_ext'],
          figures=pytest_counts),
    Stage('kernel_determinism',
          by_mode(python('tools/gpu_check/kernel_determinism.py', '--device', 'cuda'),
                  python('tools/gpu_check/kernel_determinism.py', '--device', 'cpu')),
          limit=dict(gpu=90, rehearse=300), gpu_only=True, needs=['install', 'build_ext'],
          figures=lambda output, args: last_json_line(output)),
    sanitizer_stage('memcheck'),
    sanitizer_stage('racecheck'),
    bench_ops_stage('fp32'),
    bench_ops_stage('bf16'),
    bench_kat_stage('small', 1024),
    bench_kat_stage('base', 512),
    Stage('train_rkanet50',
          by_mode(python('benchmarks/bench_rkan.py', '--device', 'cuda', '--batch', '512',
                         '--amp', 'bf16', '--fit-batch', '--json'),
                  python('benchmarks/bench_rkan.py', '--device', 'cpu', '--batch', '2', '--size',
                         '32', '--warmup', '1', '--steps', '2', '--json')),
          limit=dict(gpu=120, rehearse=600), needs=['install', 'build_ext'],
          figures=lambda output, args: last_json_line(output)),
    Stage('coco_data',
          lambda args: python('-c', 'import sys; from mmrkan.testing import make_coco_style; '
                              'make_coco_style(sys.argv[1], num_train=8, num_val=2, '
                              'image_size=(int(sys.argv[2]), int(sys.argv[2])))',
                              '{work}/coco', '512' if args.mode == 'gpu' else '128'),
          limit=dict(gpu=60, rehearse=120), needs=['install']),
    detector_stage('maskrcnn_katdet_small',
                   'configs/katdet/mask-rcnn_katdet-small_simplefpn_3x_coco.py'),
    detector_stage('maskrcnn_rkanet50', 'configs/rkan/mask-rcnn_rkanet-50_fpn_1x_coco.py'),
    # The GPU machine resolves nothing: the rehearsal checks the bundle for it.
    Stage('bundle_resolves_cp312', by_mode(None, ['bash', '-c', '{bundle_check}']),
          limit=dict(gpu=60, rehearse=300)),
]


class Recorder:
    """Keeps OUT_DIR/gpu_check.json up to date and appends every stage's output to the log."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.path = osp.join(args.out, 'gpu_check.json')
        self.log_path = osp.join(args.out, 'gpu_check.log')
        self.data = dict(mode=args.mode, started=time.strftime('%Y-%m-%d %H:%M:%S UTC',
                                                               time.gmtime()),
                         budget_s=args.budget, machine=machine_info(), stages=[])
        open(self.log_path, 'w').close()
        self.save()

    def save(self) -> None:
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)

    def log(self, text: str) -> None:
        with open(self.log_path, 'a') as f:
            f.write(text)

    def add(self, result: Dict) -> None:
        self.data['stages'].append(result)
        self.save()
        line = f"[gpu_check] {result['name']}: {result['status']}"
        if result.get('reason'):
            line += f" ({result['reason']})"
        print(f"{line} [{result.get('seconds', 0):.0f} s]", flush=True)


def machine_info() -> Dict:
    info = dict(python=platform.python_version(), cpus=os.cpu_count(), host=platform.node())
    try:
        import torch
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(sms=props.multi_processor_count,
                        gpu_memory_gib=round(props.total_memory / 2**30, 1),
                        capability='.'.join(map(str, torch.cuda.get_device_capability(0))))
    except Exception as error:  # the record must be written even if torch is broken
        info['torch_error'] = repr(error)
    for tool, flag in (('nvcc', '--version'), ('compute-sanitizer', '--version'),
                       ('nvidia-smi', '--query-gpu=driver_version,clocks.max.sm')):
        try:
            out = subprocess.run([tool, flag] + (['--format=csv,noheader'] if tool ==
                                                 'nvidia-smi' else []),
                                 capture_output=True, text=True, timeout=30).stdout
            info[tool] = out.strip().splitlines()[-1] if out.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            info[tool] = None
    return info


def run_command(argv: List[str], cwd: str, env: Dict[str, str], timeout: float,
                recorder: Recorder) -> (int, str, bool):
    """Runs ``argv`` in its own process group (so a timeout also ends its children)."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    recorder.log(f"\n===== $ {' '.join(argv)}  (exit {process.returncode}"
                 f"{', timed out' if timed_out else ''})\n{output}")
    return process.returncode, output, timed_out


def copy_tree(work: str) -> str:
    tree = osp.join(work, 'tree')
    shutil.rmtree(tree, ignore_errors=True)
    patterns = shutil.ignore_patterns(*SKIPPED_PATTERNS)

    def ignore(directory: str, names: List[str]) -> set:
        skipped = set(patterns(directory, names))
        return skipped | (TOP_LEVEL_SKIPPED & set(names) if directory == REPO else set())

    shutil.copytree(REPO, tree, symlinks=True, ignore=ignore)
    return tree


def install(args: argparse.Namespace, env: Dict[str, str], recorder: Recorder,
            timeout: float) -> Dict:
    """The bundle's wheels into a fresh target folder (the device README's command), the
    torchvision stand-in of mmcv._ext into it, then the imports."""
    wheels = sorted(glob.glob(osp.join(args.bundle, 'wheels', '*.whl')))
    if not wheels:
        return dict(status='failed', reason=f'no wheels in {args.bundle}/wheels: run '
                    '`bash tools/gpu_check.sh --prepare` first and carry the bundle folder')
    shutil.rmtree(args.site, ignore_errors=True)
    code, output, timed_out = run_command(
        [sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',
         '--no-cache-dir', '--upgrade', '--target', args.site, *wheels],
        args.tree, env, timeout, recorder)
    if code != 0:
        return dict(status='failed', reason='pip install of the bundle failed'
                    + (' (timed out)' if timed_out else ''), output_tail=output[-2000:])
    shutil.copy(osp.join(REPO, 'tools', 'gpu_check', 'mmcv_ext.py'),
                osp.join(args.site, 'mmcv', '_ext.py'))
    code, output, _ = run_command([sys.executable, '-c', IMPORT_CHECK], args.tree, env, 60,
                                  recorder)
    if code != 0:
        return dict(status='failed', reason='the installed stack does not import',
                    output_tail=output[-2000:])
    return dict(status='passed', figures=dict(wheels=len(wheels), mmcv=output.strip()[-20:],
                                              mmcv_ops='torchvision stand-in (nms, roi_align)'))


def stage_env(args: argparse.Namespace, stage: Stage) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([args.site, args.tree] + (
        [env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env['PYTHONUNBUFFERED'] = '1'
    env['MAX_JOBS'] = env.get('MAX_JOBS', str(os.cpu_count() or 1))
    if args.mode != 'gpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    env.update(stage.env)
    if stage.name == 'build_ext':
        # torch takes the toolkit from the first nvcc on PATH, which can be a wrapper outside it
        # (/usr/local/bin/nvcc here): then libcudart is not found at link time.
        if 'CUDA_HOME' not in env and osp.exists('/usr/local/cuda/bin/nvcc'):
            env['CUDA_HOME'] = '/usr/local/cuda'
        # torch's CUDA headers include those of the CUDA wheels next to torch (cuBLAS, ...).
        import torch
        site_packages = osp.dirname(osp.dirname(torch.__file__))
        includes = sorted(glob.glob(osp.join(site_packages, 'nvidia', '*', 'include')) +
                          glob.glob(osp.join(site_packages, 'nvidia', 'cu*', 'include')))
        env['CPATH'] = os.pathsep.join(includes + ([env['CPATH']] if env.get('CPATH') else []))
    return env


def fill_placeholders(argument: str, args: argparse.Namespace) -> str:
    """``{work}``, ``{bundle_check}`` and ``{sanitizer}`` in a stage's argument (other braces,
    e.g. in inline Python, are left alone)."""
    for key in ('work', 'bundle_check', 'sanitizer'):
        argument = argument.replace('{' + key + '}', getattr(args, key))
    return argument


def run_stage(stage: Stage, args: argparse.Namespace, results: Dict[str, str],
              recorder: Recorder, deadline: float) -> Dict:
    result = dict(name=stage.name)
    blocked = [need for need in stage.needs if results.get(need) != 'passed']
    remaining = deadline - time.time()
    argv = stage.command(args)
    if args.mode == 'rehearse' and stage.gpu_only and argv is not None:
        result.update(status='skipped', reason='needs a CUDA GPU')
        result['cpu_stand_in'] = dict(command=' '.join(argv))
    elif stage.name != 'install' and argv is None:
        return dict(result, status='skipped', reason=f'no {args.mode} counterpart')
    if blocked:
        return dict(name=stage.name, status='skipped',
                    reason=f"needs {', '.join(blocked)}, which did not pass")
    if remaining < 10:
        return dict(result, status='skipped', reason=f'out of the {args.budget} s time budget')
    timeout = min(stage.limit[args.mode], remaining)
    env = stage_env(args, stage)
    start = time.time()
    if stage.name == 'install':
        outcome = install(args, env, recorder, timeout)
    else:
        argv = [fill_placeholders(a, args) for a in argv]
        code, output, timed_out = run_command(argv, args.tree, env, timeout, recorder)
        if code == 0:
            try:
                outcome = dict(status='passed', figures=stage.figures(output, args))
            except (ValueError, OSError, KeyError) as error:
                outcome = dict(status='failed', reason=f'its figures could not be read: {error}')
        else:
            errors = [line[:300] for line in output.splitlines() if ERROR_LINE.search(line)]
            outcome = dict(status='failed',
                           reason=f'timed out after {timeout:.0f} s' if timed_out
                           else f'exit code {code}',
                           output_tail='\n'.join(errors[:12] + ['...'] + output.splitlines()[-10:]))
    outcome['seconds'] = round(time.time() - start, 1)
    if 'cpu_stand_in' in result:
        result['cpu_stand_in'].update(outcome)
        result['seconds'] = outcome['seconds']
        return result
    return dict(result, **outcome)


def headline(result: Dict) -> str:
    """The one figure of a stage worth a table cell."""
    figures = result.get('figures') or result.get('cpu_stand_in', {}).get('figures') or {}
    name = result['name']
    if 'cpu_stand_in' in result:
        return f"CPU stand-in {result['cpu_stand_in'].get('status')}"
    if name == 'op_tests':
        return ', '.join(f'{n} {k}' for k, n in figures.items())
    if name.startswith('bench_ops'):
        first_of_each_op = {c['op']: c for c in reversed(figures.get('cases', []))}.values()
        return '; '.join(f"{c['op']} fwd+bwd {c['vs_baseline_fwd_bwd']:.2f}x {c['baseline']}"
                         for c in reversed(list(first_of_each_op))) + (f", copy {figures['copy_gbps']:.0f} GB/s"
                                                if figures.get('copy_gbps') else '')
    if name.startswith('train_kat'):
        return f"KAT/DeiT {figures.get('kat_over_deit')} (batch {figures.get('batch')})"
    if name == 'train_rkanet50':
        return f"RKANet/ResNet {figures.get('rkanet_over_resnet')} (batch {figures.get('batch')})"
    if name.startswith('maskrcnn'):
        return (f"loss {figures.get('first_quarter_mean', 0):.3f}->"
                f"{figures.get('last_quarter_mean', 0):.3f}, skips {figures.get('skipped_steps')}"
                + (f", peak {figures['peak_memory_gib']} GiB" if figures.get('peak_memory_gib')
                   else ''))
    if name == 'kernel_determinism':
        return (f"{figures.get('runs')} runs, "
                f"{'bitwise identical' if figures.get('bitwise_identical') else 'DIFFER'}")
    if name == 'build_ext' or name == 'install':
        return f"{result.get('seconds', 0):.0f} s"
    return ', '.join(f'{k} {v}' for k, v in figures.items())[:60]


def print_table(recorder: Recorder) -> None:
    rows = [(r['name'], r['status'] + (f" ({r['reason']})" if r.get('reason') else ''),
             headline(r) if r['status'] == 'passed' or 'cpu_stand_in' in r else '')
            for r in recorder.data['stages']]
    widths = [max(len(row[i]) for row in rows + [('stage', 'result', 'figure')]) for i in range(2)]
    print(f"\n[gpu_check] results in {recorder.path} (log: {recorder.log_path})")
    print(f"{'stage':<{widths[0]}}  {'result':<{min(widths[1], 60)}}  figure")
    for name, status, figure in rows:
        print(f'{name:<{widths[0]}}  {status[:60]:<{min(widths[1], 60)}}  {figure}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mode', required=True, choices=('gpu', 'rehearse'))
    parser.add_argument('--out', required=True, help='results folder')
    parser.add_argument('--bundle', required=True, help='the folder --prepare filled')
    parser.add_argument('--work', required=True, help='scratch folder (tree copy, site, data)')
    parser.add_argument('--budget', type=float, default=0,
                        help='seconds for all stages (0: no limit beyond each stage\'s own)')
    parser.add_argument('--bundle-check', default='', help='command checking the bundle (rehearse)')
    parser.add_argument('--only', nargs='+', help='run only these stages (and skip the others)')
    args = parser.parse_args()
    if args.budget < 0:
        parser.error(f'--budget={args.budget} must be >= 0')
    names = [stage.name for stage in STAGES]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"--only: unknown stages {unknown}; allowed: {', '.join(names)}")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    args.out, args.work, args.bundle = map(osp.abspath, (args.out, args.work, args.bundle))
    args.site = osp.join(args.work, 'site')
    args.sanitizer = shutil.which('compute-sanitizer') or '/usr/local/cuda/bin/compute-sanitizer'
    args.tree = copy_tree(args.work)
    recorder = Recorder(args)
    deadline = time.time() + (args.budget or 10**9)
    results: Dict[str, str] = {}
    for stage in STAGES:
        if args.only and stage.name not in args.only:
            continue
        result = run_stage(stage, args, results, recorder, deadline)
        results[stage.name] = result['status']
        recorder.add(result)
        if result.get('output_tail'):
            print('\n'.join('    ' + line for line in result['output_tail'].splitlines()[-15:]))
    print_table(recorder)
    failed = [r['name'] for r in recorder.data['stages'] if r['status'] == 'failed'
              or r.get('cpu_stand_in', {}).get('status') == 'failed']
    recorder.data['failed'] = failed
    recorder.save()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
