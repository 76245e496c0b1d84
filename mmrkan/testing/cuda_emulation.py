"""The CUDA kernels of :mod:`mmrkan.ops`, run on the CPU by a SIMT emulator (for the tests).

:func:`load` compiles ``mmrkan/ops/csrc/emulation`` (the emulator, and the CUDA launchers and
kernel headers of ``csrc/cuda`` and ``csrc/common/cuda`` built by the host compiler) with
:func:`torch.utils.cpp_extension.load`. The build is cached in
``${MMRKAN_CACHE_DIR:-~/.cache/mmrkan}/emulation/<key>``, the key being a hash of every source
it compiles and of the build settings, so it is rebuilt exactly when one of them changes.

``MMRKAN_EMULATION_TSAN=1`` builds it with ThreadSanitizer instead, which reports data races
between the emulated CUDA threads (a missing ``__syncthreads()``). The sanitizer's runtime must be
loaded first::

    LD_PRELOAD=$(gcc -print-file-name=libtsan.so) MMRKAN_EMULATION_TSAN=1 \\
        .venv/bin/python -m pytest -n 0 tests/test_ops -k emulated

ThreadSanitizer prints each race on stderr and makes the process exit with status 66. Run torch
single-threaded (the test suite does): its OpenMP threads synchronise in code the sanitizer does
not see, which shows up as false races inside torch.
What the emulation proves and what it does not: the README's section on the emulated CUDA tests.
"""
import functools
import glob
import hashlib
import os
import os.path as osp
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Dict, List, Sequence, Tuple

import torch

CSRC = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'ops', 'csrc')
TSAN_ENV = 'MMRKAN_EMULATION_TSAN'
# The emulator's translation units (compiled in parallel by ninja).
_SOURCES = ('simt.cpp', 'emulated_group_rational.cpp', 'emulated_kan_conv2d.cpp',
            'emulated_probes.cpp', 'bindings.cpp')
_CFLAGS = ['-O1', '-DMMRKAN_SIMT_EMULATION']
_TSAN_FLAGS = ['-fsanitize=thread', '-g']


@dataclass(frozen=True)
class EmulatedGpu:
    """What the launchers and the launch checks see of a GPU.

    The launch plans depend on the shapes only (``common/cuda/kan_launch_plan.h``), so two GPUs
    run the same grids; what differs is the order in which their blocks run and finish, which
    decides, e.g., which block does the final reduction of a backward. ``block_order`` 0 runs the
    blocks in index order, another value in a permutation seeded by it.
    """
    name: str
    smem_per_block: int = 48 * 1024  # without the opt-in for larger dynamic shared memory
    block_order: int = 0


# An H200 fills its 132 SMs in index order; a 2-SM GPU runs a few blocks at a time and they
# finish out of order (a fixed shuffle here).
H200 = EmulatedGpu('H200')
SMALL_GPU = EmulatedGpu('2-SM GPU', block_order=2)
GPUS = (H200, SMALL_GPU)


def tsan_enabled() -> bool:
    value = os.environ.get(TSAN_ENV, '0')
    if value not in ('0', '1'):
        raise ValueError(f'{TSAN_ENV}={value!r} is not supported; allowed: 0, 1')
    return value == '1'


def input_files() -> List[str]:
    """Every file the emulation build reads, sorted (the kernels, launchers and emulator)."""
    patterns = ['emulation/*', 'common/**/*', 'cuda/*.h', 'kan_ops.h']
    files = set()
    for pattern in patterns:
        files.update(f for f in glob.glob(osp.join(CSRC, pattern), recursive=True)
                     if osp.isfile(f))
    return sorted(files)


def build_key(tsan: bool) -> str:
    digest = hashlib.sha256()
    for path in input_files():
        digest.update(osp.relpath(path, CSRC).encode() + b'\0')
        with open(path, 'rb') as f:
            digest.update(f.read() + b'\0')
    # The checkout too: the build files name the sources by their absolute paths.
    settings = [CSRC, torch.__version__, sys.version, *_CFLAGS, *(_TSAN_FLAGS if tsan else [])]
    digest.update('\0'.join(settings).encode())
    return digest.hexdigest()[:16]


def build_dir(tsan: bool) -> str:
    cache = os.environ.get('MMRKAN_CACHE_DIR') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'mmrkan')
    return osp.join(cache, 'emulation', build_key(tsan) + ('-tsan' if tsan else ''))


def _tsan_runtime_loaded() -> bool:
    with open('/proc/self/maps') as maps:
        return 'libtsan' in maps.read()


@functools.lru_cache(maxsize=None)
def load() -> ModuleType:
    """Builds (once per key) and imports the emulation module."""
    from torch.utils.cpp_extension import load as load_extension

    tsan = tsan_enabled()
    if tsan and not _tsan_runtime_loaded():
        raise RuntimeError(
            f'{TSAN_ENV}=1 needs the ThreadSanitizer runtime loaded before Python starts: run '
            f'with LD_PRELOAD=$(gcc -print-file-name=libtsan.so)')
    directory = build_dir(tsan)
    os.makedirs(directory, exist_ok=True)
    flags = _CFLAGS + (_TSAN_FLAGS if tsan else [])
    # The compiler must not run with the sanitizer's runtime preloaded (it fails to start).
    preload = os.environ.pop('LD_PRELOAD', None)
    try:
        return load_extension(
            name='mmrkan_simt_emulation' + ('_tsan' if tsan else ''),
            sources=[osp.join(CSRC, 'emulation', source) for source in _SOURCES],
            extra_cflags=flags,
            extra_ldflags=_TSAN_FLAGS if tsan else [],
            build_directory=directory,
            verbose=False)
    finally:
        if preload is not None:
            os.environ['LD_PRELOAD'] = preload


def _gpu(gpu: EmulatedGpu):
    return load().EmulatedGpu(gpu.smem_per_block, gpu.block_order)


def group_rational_forward(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                           gpu: EmulatedGpu) -> torch.Tensor:
    """``group_rational`` forward by the CUDA launcher and kernels on the emulated ``gpu``."""
    return load().group_rational_forward(_gpu(gpu), x, numerator, denominator)


def group_rational_backward(grad_out: torch.Tensor, x: torch.Tensor, numerator: torch.Tensor,
                            denominator: torch.Tensor,
                            gpu: EmulatedGpu) -> Tuple[torch.Tensor, ...]:
    """``(grad_x, grad_numerator, grad_denominator)`` by the CUDA kernels on emulated ``gpu``."""
    return load().group_rational_backward(_gpu(gpu), grad_out, x, numerator, denominator)


def kan_conv2d_forward(x: torch.Tensor, base_weight: torch.Tensor, poly_weight: torch.Tensor,
                       norm_scale: torch.Tensor, stride: int, basis: int, normalization: int,
                       base_activation: int, basis_params: Sequence[float],
                       gpu: EmulatedGpu) -> torch.Tensor:
    """``kan_conv2d`` forward by the CUDA launcher and kernels on the emulated ``gpu`` (the
    arguments of ``torch.ops.mmrkan.kan_conv2d_forward``, then the GPU)."""
    return load().kan_conv2d_forward(_gpu(gpu), x, base_weight, poly_weight, norm_scale, stride,
                                     basis, normalization, base_activation, list(basis_params))


def kan_conv2d_backward(grad_out: torch.Tensor, x: torch.Tensor, base_weight: torch.Tensor,
                        poly_weight: torch.Tensor, norm_scale: torch.Tensor, stride: int,
                        basis: int, normalization: int, base_activation: int,
                        basis_params: Sequence[float],
                        gpu: EmulatedGpu) -> Tuple[torch.Tensor, ...]:
    """``(grad_x, grad_base_weight, grad_poly_weight, grad_norm_scale)`` by the CUDA kernels on
    the emulated ``gpu``."""
    return load().kan_conv2d_backward(_gpu(gpu), grad_out, x, base_weight, poly_weight,
                                      norm_scale, stride, basis, normalization, base_activation,
                                      list(basis_params))


def group_rational_plan(x: torch.Tensor, numerator: torch.Tensor,
                        denominator: torch.Tensor) -> Dict[str, int]:
    """The launch plan of ``group_rational`` for these arguments (any GPU: shapes only)."""
    return load().group_rational_plan(x, numerator, denominator)


def kan_conv2d_plan(x: torch.Tensor,
                    poly_weight: torch.Tensor,
                    stride: int,
                    basis: int,
                    backward: bool,
                    normalization: int = 1,
                    base_activation: int = 0,
                    basis_params: Sequence[float] = ()) -> Dict[str, int]:
    """The tiles and grid of ``kan_conv2d`` for these arguments (any GPU: shapes only); codes as
    in the op schema (default: tanh normalisation, identity base)."""
    return load().kan_conv2d_plan(x, poly_weight, stride, basis, backward, normalization,
                                  base_activation, list(basis_params))


def run_probe(probe: str, gpu: EmulatedGpu = H200) -> torch.Tensor:
    """Runs one of the emulator's own test kernels (``emulated_probes.cpp``)."""
    return load().run_probe(probe, _gpu(gpu))


def launch_empty_kernel(grid: Tuple[int, int, int], block: Tuple[int, int, int],
                        dynamic_smem: int = 0, smem_per_block: int = 48 * 1024) -> None:
    """Launches a kernel that does nothing: only the launch checks run."""
    load().launch_empty_kernel(grid, block, dynamic_smem, smem_per_block)


def launch_log() -> List[Dict]:
    """The emulated launches since :func:`clear_launch_log`: grid, block, shared memory."""
    return load().launch_log()


def clear_launch_log() -> None:
    load().clear_launch_log()
