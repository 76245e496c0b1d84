#!/usr/bin/env bash
# Compiles mmrkan's extension WITH its CUDA kernels (csrc/*.cpp, csrc/cpu/*.cpp, csrc/cuda/*.cu)
# on a machine that may have no GPU, so that a CUDA compile error fails CI everywhere.
#
# The build goes to a throw-away directory: the in-place mmrkan/_ext*.so of the environment is left
# alone. The built module is then loaded (on the CPU) to check that every op has a CUDA kernel, and
# ptxas' register/spill report is summarised. A stamp keyed by the sources, the build settings and
# the torch/nvcc versions, kept in ${MMRKAN_CACHE_DIR:-~/.cache/mmrkan}, skips all of it when
# nothing changed.
#
# Usage: tools/check_cuda_build.sh [PYTHON]        (default: <checkout>/.venv/bin/python)
# Environment:
#   CUDA_HOME                  CUDA toolkit with nvcc (default /usr/local/cuda)
#   TORCH_CUDA_ARCH_LIST       target GPUs (default "9.0+PTX": H100 machine code plus PTX)
#   MAX_JOBS                   parallel compile jobs (default 2)
#   MMRKAN_PTXAS_REPORT=1      print registers/stack/spills of every kernel, not only spilling ones
#   MMRKAN_FORCE_CUDA_BUILD=1  build even if the stamp says nothing changed
#   MMRKAN_CUDA_BUILD_KEEP=DIR keep the build (objects, module, build.log with ptxas' report) in
#                              DIR instead of a throw-away folder, and build whatever the stamp
#                              says (benchmarks/kernel_report.py reads it)
#   MMRKAN_CUDA_BUILD_SOURCE=TREE  build the sources of another checkout of mmrkan (e.g. an older
#                              commit, for kernel_report.py --baseline) with this script
set -euo pipefail

MMRKAN_ROOT="$(cd "${MMRKAN_CUDA_BUILD_SOURCE:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)"
KEEP_DIR="${MMRKAN_CUDA_BUILD_KEEP:-}"
PY="${1:-$MMRKAN_ROOT/.venv/bin/python}"
CACHE_DIR="${MMRKAN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrkan}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0+PTX}"
export MAX_JOBS="${MAX_JOBS:-2}"

log() { printf '[check_cuda_build] %s\n' "$*"; }
die() { printf '[check_cuda_build] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "python not found: $PY (pass the environment's python as the first argument)"
NVCC="$CUDA_HOME/bin/nvcc"
[ -x "$NVCC" ] || die "nvcc not found at $NVCC; set CUDA_HOME to a CUDA toolkit"

torch_info="$("$PY" -c 'import os, torch
print(torch.__version__, torch.version.cuda, os.path.dirname(os.path.dirname(torch.__file__)))')" \
    || die "torch does not import with $PY"
read -r torch_version torch_cuda site_packages <<<"$torch_info"
[ "$torch_cuda" != None ] || die "torch $torch_version is a CPU-only build: the CUDA sources need \
torch's generated CUDA headers, which only a CUDA build of torch ships"
nvcc_version="$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
log "python $PY, torch $torch_version (CUDA $torch_cuda), nvcc $nvcc_version at $CUDA_HOME"

# The CUDA headers that torch's CUDA wheels bring (cuBLAS, cuSPARSE, ...) may be missing from the
# toolkit; torch's headers include them.
wheel_includes="$(find "$site_packages/nvidia" -mindepth 2 -maxdepth 2 -type d -name include \
    2>/dev/null | sort | paste -sd: -)"
export CPATH="${wheel_includes}${CPATH:+:$CPATH}"

# Stamp: every input of the build (csrc/emulation is the CPU emulator's, not compiled here).
stamp="$( { cat "$MMRKAN_ROOT/setup.py" "$MMRKAN_ROOT/tools/check_cuda_build.sh"
           find "$MMRKAN_ROOT/mmrkan/ops/csrc" -type f -not -path '*/csrc/emulation/*' \
               | LC_ALL=C sort | while read -r f; do
               printf '%s\n' "${f#"$MMRKAN_ROOT"/}"; cat "$f"; done
           printf '%s\n' "$torch_version" "$nvcc_version" "$TORCH_CUDA_ARCH_LIST"
         } | sha256sum | cut -d' ' -f1)"
stamp_file="$CACHE_DIR/cuda-build-stamps/$stamp"
if [ -f "$stamp_file" ] && [ "${MMRKAN_FORCE_CUDA_BUILD:-0}" != 1 ] && [ -z "$KEEP_DIR" ]; then
    log "sources unchanged since the last successful CUDA build (stamp $stamp_file): skipping"
    exit 0
fi

# No debug information in the host objects (Python's CFLAGS carry -g; a CFLAGS in the environment
# replaces them, hence spelled out): the C++ files compile in half the time.
export CFLAGS="${CFLAGS:-$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")')} -g0"
if [ -n "$KEEP_DIR" ]; then
    rm -rf "$KEEP_DIR"
    mkdir -p "$KEEP_DIR"
    build_dir="$(cd "$KEEP_DIR" && pwd)"
else
    build_dir="$(mktemp -d "${TMPDIR:-/tmp}/mmrkan-cuda-build.XXXXXX")"
    trap 'rm -rf "$build_dir"' EXIT
fi
build_log="$build_dir/build.log"
log "building the extension with CUDA for $TORCH_CUDA_ARCH_LIST into $build_dir ($MAX_JOBS jobs)"
start=$SECONDS
if ! (cd "$MMRKAN_ROOT" && FORCE_CUDA=1 NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }-Xptxas -v" \
        "$PY" setup.py build_ext --build-lib "$build_dir/lib" --build-temp "$build_dir/temp") \
        >"$build_log" 2>&1; then
    mkdir -p "$CACHE_DIR"
    cp "$build_log" "$CACHE_DIR/cuda-build-failed.log"
    grep -E ': (fatal )?error|errors? detected|^FAILED: ' "$build_log" | cut -c1-400 | head -n 40 >&2 \
        || tail -n 40 "$build_log" >&2
    die "the CUDA build failed after $((SECONDS - start)) s (full log: $CACHE_DIR/cuda-build-failed.log)"
fi
log "built in $((SECONDS - start)) s"

so_file="$(find "$build_dir/lib" -name '_ext*.so' | head -n1)"
[ -n "$so_file" ] || die "the build produced no _ext*.so"

# Resource usage of every kernel, from ptxas -v.
"$PY" - "$build_log" "${MMRKAN_PTXAS_REPORT:-0}" <<'PYEOF'
import re
import subprocess
import sys

text = open(sys.argv[1]).read()
kernels = []
for m in re.finditer(r"Compiling entry function '(\S+)' for '(\w+)'\n(.*?)Used (\d+) registers",
                     text, re.S):
    name, arch, details, registers = m.groups()
    stack, spill_stores, spill_loads = map(int, re.search(
        r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads',
        details).groups())
    kernels.append([name, arch, int(registers), stack, spill_stores, spill_loads])
try:
    names = subprocess.run(['c++filt'], input='\n'.join(k[0] for k in kernels),
                           capture_output=True, text=True, check=True).stdout.split('\n')
except (OSError, subprocess.CalledProcessError):
    names = [k[0] for k in kernels]
for kernel, name in zip(kernels, names):
    kernel[0] = re.sub(r'\(anonymous namespace\)::|mmrkan::|c10::|^void |\(.*\)$', '', name)
print(f'[check_cuda_build] ptxas: {len(kernels)} kernels, '
      f'{min((k[2] for k in kernels), default=0)} to {max((k[2] for k in kernels), default=0)} '
      'registers per thread')
show_all = sys.argv[2] == '1'
spilling = [k for k in kernels if k[4] or k[5]]
if spilling and not show_all:
    print(f'[check_cuda_build] {len(spilling)} kernels spill registers to local memory:')
for name, arch, registers, stack, stores, loads in kernels if show_all else spilling:
    print(f'    {arch} {registers:3d} registers, stack {stack:3d} B, spills {stores:3d}/{loads:3d} B '
          f'(stores/loads)  {name}')
PYEOF

# The module must load (on the CPU too) and give each op a CUDA kernel.
"$PY" - "$so_file" <<'PYEOF'
import sys

import torch

torch.ops.load_library(sys.argv[1])
ops = ['group_rational_forward', 'group_rational_backward', 'kan_conv2d_forward',
       'kan_conv2d_backward']
missing = [op for op in ops
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f'mmrkan::{op}', 'CUDA')]
if missing:
    sys.exit(f'[check_cuda_build] ERROR: no CUDA kernel registered for: {", ".join(missing)}')
print(f'[check_cuda_build] the built module loads; CUDA kernels registered for: {", ".join(ops)}')
PYEOF

mkdir -p "$(dirname "$stamp_file")"
touch "$stamp_file"
log "CUDA build OK (stamp $stamp_file)"
