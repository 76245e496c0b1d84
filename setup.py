"""Build and install mmrkan.

The extension ``mmrkan._ext`` is built from ``mmrkan/ops/csrc``: the C++ (CPU) sources always,
the CUDA sources too when CUDA is available or ``FORCE_CUDA=1``. It compiles against the torch
installed in the target environment, so install with ``pip install --no-build-isolation -e .``:
an isolated build would compile against another torch (or none), and is refused with a clear
message. Supported torch: ``SUPPORTED_TORCH`` (2.1 to 2.15, the tested ends being 2.1.2 and
2.14.1). The C++ standard is left to torch's cpp_extension (C++17 before torch 2.13, C++20 from
2.13 on, as the torch headers need); the sources are valid C++17 and C++20.
"""
import glob
import os
import os.path as osp
import re
import shutil
import sys
from types import ModuleType

from setuptools import find_packages, setup

CSRC = osp.join('mmrkan', 'ops', 'csrc')
# The torch versions the extension is built and tested with (lowest and highest bound inclusive
# and exclusive); tools/setup_env.sh refuses others with the same range.
MIN_TORCH, MAX_TORCH = (2, 1), (2, 16)
SUPPORTED_TORCH = '>={},<{}'.format('.'.join(map(str, MIN_TORCH)), '.'.join(map(str, MAX_TORCH)))
INSTALL_HINT = ('install torch ({supported}) into the environment first, then mmrkan with '
                '`pip install --no-build-isolation -e .` (or `MMRKAN_USE_ACTIVE_ENV=1 bash '
                'tools/setup_env.sh`, which also installs mmcv with its compiled ops)').format(
                    supported=SUPPORTED_TORCH)


# What `mim` (openmim) and mmpretrain's ModelHub look for inside an installed OpenMMLab package.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def add_mim_extension() -> None:
    """Put ``configs``, ``tools`` and ``model-index.yml`` into ``mmrkan/.mim``.

    An editable install (``pip install -e .``) gets symlinks to the checkout's files, so that edits
    show at once; a wheel or sdist build gets copies, which ``include_package_data`` (with
    MANIFEST.in) then packages. Other setup commands (e.g. metadata only) leave ``.mim`` alone.
    """
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'copy' if os.name == 'nt' else 'symlink'  # symlinks need privileges on Windows
    elif {'bdist_wheel', 'sdist', 'build', 'install'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    repo = osp.dirname(osp.abspath(__file__))
    mim_dir = osp.join(repo, 'mmrkan', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FILES:
        source, target = osp.join(repo, name), osp.join(mim_dir, name)
        if not osp.exists(source):  # a build from an sdist, whose .mim already holds the copies
            continue
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        if mode == 'symlink':
            os.symlink(osp.relpath(source, mim_dir), target)
        elif osp.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(source, target)


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join('mmrkan', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def import_target_torch() -> ModuleType:
    """The environment's torch, refusing builds that would compile against another one."""
    try:
        import torch
    except ImportError as error:
        sys.exit(f'error: mmrkan compiles its extension against the torch of the environment it is '
                 f'installed into, but this build cannot import torch ({error}); a build with '
                 f'pip\'s default build isolation hides the installed packages. Fix: {INSTALL_HINT}.')
    if 'pip-build-env-' in (torch.__file__ or ''):
        sys.exit(f'error: this build would compile mmrkan\'s extension against torch '
                 f'{torch.__version__} from pip\'s isolated build environment ({torch.__file__}), '
                 f'not against the torch of the environment it is installed into. Fix: '
                 f'{INSTALL_HINT}.')
    major_minor = re.match(r'(\d+)\.(\d+)', torch.__version__)
    if not major_minor or not MIN_TORCH <= tuple(map(int, major_minor.groups())) < MAX_TORCH:
        sys.exit(f'error: torch {torch.__version__} is installed; mmrkan supports torch '
                 f'{SUPPORTED_TORCH}. Nothing was installed. Fix: {INSTALL_HINT}.')
    return torch


def make_extensions() -> list:
    torch = import_target_torch()
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob(osp.join(CSRC, '*.cpp')) + glob.glob(osp.join(CSRC, 'cpu', '*.cpp')))
    cuda_sources = sorted(glob.glob(osp.join(CSRC, 'cuda', '*.cu')))
    cxx_flags = ['-O3']
    openmp = ['-fopenmp'] if os.name != 'nt' else ['/openmp']
    with_cuda = torch.cuda.is_available() or os.getenv('FORCE_CUDA', '0') == '1'
    if with_cuda and cuda_sources:
        return [
            CUDAExtension(
                'mmrkan._ext',
                sources + cuda_sources,
                define_macros=[('MMRKAN_WITH_CUDA', None)],
                # No --use_fast_math: IEEE division and denormals as on the CPU; the kernels
                # use approximate instructions only where stated (docs/ops.md, CUDA kernels).
                extra_compile_args={'cxx': cxx_flags + openmp, 'nvcc': ['-O3']},
                extra_link_args=openmp,
            )
        ]
    return [
        CppExtension(
            'mmrkan._ext',
            sources,
            extra_compile_args={'cxx': cxx_flags + openmp},
            extra_link_args=openmp,
        )
    ]


def cmdclass() -> dict:
    from torch.utils.cpp_extension import BuildExtension
    return {'build_ext': BuildExtension.with_options(use_ninja=True)}


add_mim_extension()
setup(
    name='mmrkan',
    license='Apache-2.0',
    version=read_version(),
    description='Kolmogorov-Arnold Network backbones (RKAN, KAT) for OpenMMLab 2.x',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.9',
    install_requires=[
        # A range, not a pin: the extension builds against the user's own (CUDA) torch;
        # tools/setup_env.sh installs the verified torch 2.14.1 when none is present.
        f'torch{SUPPORTED_TORCH}',
        'torchvision',
        'mmengine==0.10.7',
        'mmcv==2.1.0',
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'mmpretrain==1.2.0',
        'pycocotools',
        'ftfy',
        'regex',
        'numpy',
        'pillow',
        'matplotlib',
    ],
    extras_require={
        # onnx, onnxruntime, onnxscript: tools/deployment/pytorch2onnx.py (onnxscript for --dynamo)
        'tests': ['pytest', 'pytest-xdist', 'timm', 'tensorboard', 'onnx', 'onnxruntime', 'onnxscript'],
    },
    ext_modules=make_extensions(),
    cmdclass=cmdclass(),
    include_package_data=True,  # mmrkan/.mim, listed in MANIFEST.in
    zip_safe=False,
)
