"""``tools/gpu_check.sh --prepare``: fill the bundle folder with what the GPU machine lacks.

Downloads the exact wheels of ``bundle.txt`` for CPython 3.12 on manylinux x86-64 (mmcv as
OpenMMLab's ``mmcv-lite`` wheel: mmcv without compiled ops, for which ``mmcv_ext.py`` stands in
there), removes anything else from the folder, checks that every requirement of every
wheel is met by the bundle or by the GPU machine (``gpu_machine_packages.txt``), and that the
working tree and the bundle together stay under the transfer limit. Downloads are skipped for
files already there, so a second run takes seconds.
"""
import argparse
import email.parser
import glob
import os
import os.path as osp
import subprocess
import sys
import zipfile
from typing import Dict, Iterable, List, Optional, Tuple

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_24_x86_64',
             'manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux1_x86_64')
# The GPU machine's interpreter, for evaluating requirement markers.
TARGET_ENVIRONMENT = dict(python_version='3.12', python_full_version='3.12.3',
                          implementation_name='cpython', implementation_version='3.12.3',
                          platform_python_implementation='CPython', sys_platform='linux',
                          platform_system='Linux', platform_machine='x86_64', os_name='posix')
# A requirement on the first is met by the second (mmcv and mmengine ask for opencv-python; the
# machine has the headless build of the same cv2; the lite wheel is mmcv without compiled ops).
EQUIVALENT = {'opencv-python': 'opencv-python-headless', 'mmcv': 'mmcv-lite'}
TRANSFER_LIMIT_MIB = 60


def read_pins(path: str) -> Dict[str, Optional[str]]:
    """``name==version`` (or bare ``name``) lines, comments skipped: canonical name -> version."""
    pins = {}
    for line in open(path):
        line = line.split('#', 1)[0].strip()
        if line:
            name, _, version = line.partition('==')
            pins[canonicalize_name(name)] = version or None
    return pins


def wheel_requirements(wheel: str) -> List[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    return [Requirement(value) for value in message.get_all('Requires-Dist') or []]


def unmet_requirements(wheels: Iterable[str], machine: Dict[str, Optional[str]]) -> List[str]:
    """Requirements of ``wheels`` (markers evaluated for the GPU machine, extras ignored) met
    neither by another wheel of the bundle nor by a package of the machine."""
    bundled = {}
    for wheel in wheels:
        name, version, _, _ = parse_wheel_filename(osp.basename(wheel))
        bundled[canonicalize_name(name)] = version
    environment = dict(default_environment(), **TARGET_ENVIRONMENT, extra='')
    unmet = []
    for wheel in wheels:
        for requirement in wheel_requirements(wheel):
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            name = name if name in bundled or name in machine else EQUIVALENT.get(name, name)
            if name in bundled:
                version: Optional[Version] = bundled[name]
            elif name in machine:
                version = Version(machine[name]) if machine[name] else None
            else:
                unmet.append(f'{osp.basename(wheel)} needs {requirement}: neither in bundle.txt '
                             'nor on the GPU machine')
                continue
            if version is not None and requirement.specifier and \
                    not requirement.specifier.contains(version, prereleases=True):
                unmet.append(f'{osp.basename(wheel)} needs {requirement}, but {name} {version} '
                             'is what the bundle or the machine has')
    return unmet


def pip(python: str, *args: str, env: Optional[Dict[str, str]] = None) -> None:
    command = [python, '-m', 'pip', *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"prepare: `{' '.join(command)}` failed:\n{result.stderr[-3000:]}")


def matching_wheel(wheel_dir: str, name: str, version: str) -> Optional[str]:
    for path in glob.glob(osp.join(wheel_dir, '*.whl')):
        wheel_name, wheel_version, _, _ = parse_wheel_filename(osp.basename(path))
        if canonicalize_name(wheel_name) == name and wheel_version == Version(version):
            return path
    return None


def download_wheels(python: str, pins: Dict[str, Optional[str]], wheel_dir: str) -> List[str]:
    wheels = []
    for name, version in pins.items():
        if version is None:
            sys.exit(f'prepare: bundle.txt: {name} has no version; write it as {name}==VERSION')
        wheel = matching_wheel(wheel_dir, name, version)
        if wheel is None:
            platforms = [arg for platform in PLATFORMS for arg in ('--platform', platform)]
            pip(python, 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version',
                '3.12', '--implementation', 'cp', *platforms, '-d', wheel_dir,
                f'{name}=={version}')
            wheel = matching_wheel(wheel_dir, name, version)
            if wheel is None:
                sys.exit(f'prepare: pip downloaded no wheel of {name}=={version} for cp312')
        wheels.append(wheel)
    return wheels


def transferred_mib(bundle: str) -> Tuple[float, float]:
    """MiB of the working tree that the device tool sends (tracked and untracked-not-ignored
    files) and of the bundle folder."""
    listed = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b'\0')
    tree = sum(osp.getsize(osp.join(REPO, f.decode())) for f in listed
               if f and osp.isfile(osp.join(REPO, f.decode())))
    bundle_size = sum(osp.getsize(p) for p in glob.glob(osp.join(bundle, '**'), recursive=True)
                      if osp.isfile(p))
    return tree / 2**20, bundle_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', required=True, help='the folder to fill')
    args = parser.parse_args()
    wheel_dir = osp.join(args.bundle, 'wheels')
    os.makedirs(wheel_dir, exist_ok=True)
    wheels = download_wheels(sys.executable, read_pins(osp.join(HERE, 'bundle.txt')), wheel_dir)
    for path in glob.glob(osp.join(wheel_dir, '*')):
        if path not in wheels:
            os.remove(path)  # a wheel of an older bundle.txt: two versions would break the install
    unmet = unmet_requirements(wheels, read_pins(osp.join(HERE, 'gpu_machine_packages.txt')))
    if unmet:
        sys.exit('prepare: requirements not met on the GPU machine:\n  ' + '\n  '.join(unmet))
    tree_mib, bundle_mib = transferred_mib(args.bundle)
    print(f'prepare: {len(wheels)} wheels in {wheel_dir} ({bundle_mib:.1f} MiB); working tree '
          f'{tree_mib:.1f} MiB; together {tree_mib + bundle_mib:.1f} MiB of the '
          f'{TRANSFER_LIMIT_MIB} MiB allowed')
    if tree_mib + bundle_mib > TRANSFER_LIMIT_MIB:
        sys.exit(f'prepare: the working tree and the bundle ({tree_mib + bundle_mib:.1f} MiB) '
                 f'exceed {TRANSFER_LIMIT_MIB} MiB: remove large untracked files from the tree')
    print('prepare: every requirement of the bundle is met by the bundle or the GPU machine')


if __name__ == '__main__':
    main()
