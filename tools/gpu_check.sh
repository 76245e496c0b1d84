#!/usr/bin/env bash
# One call that validates and benchmarks mmrkan's whole GPU path on a bare GPU machine (the lent
# H200: Python 3.12 with torch 2.11, no OpenMMLab packages, no network), rehearsed on a CPU machine.
#
#   bash tools/gpu_check.sh --prepare            # CPU machine: fill .gpu_bundle/ with the wheels the
#                                                # GPU machine lacks; prints the command to run there
#   bash tools/gpu_check.sh OUT_DIR              # GPU machine: every stage, within ~8 minutes
#   bash tools/gpu_check.sh --rehearse OUT_DIR   # CPU machine: the same stages end to end in a
#                                                # throw-away Python 3.12 venv standing in for the
#                                                # GPU machine (torch 2.11.0 from the index)
#
# The stages (tools/gpu_check/run_stages.py), most important first, each with a time limit, a
# failing one never stopping the next: install the bundle; build mmrkan._ext with its CUDA kernels
# for sm_90; CUDA op tests against the references; bitwise identity of forward and gradients across
# block schedules (alone / beside a matmul on another stream, fp32 and bf16, RKAN and KAT shapes);
# compute-sanitizer memcheck and racecheck on small calls of every kernel; bench_ops fp32 and bf16
# (the new kernels vs depthwise conv and GELU); training throughput with bf16 AMP (KAT-S vs
# DeiT-S, KAT-B vs DeiT-B, RKANet-50 vs ResNet-50); a few fp16-AMP iterations of KATDet-S and
# RKANet-50 Mask R-CNN on generated COCO-style data. Results: OUT_DIR/gpu_check.json (every stage
# with its status and figures) and OUT_DIR/gpu_check.log; the last lines printed are a table.
# Nothing is written into the checkout except by --prepare (into .gpu_bundle/, git-ignored).
#
# Environment:
#   MMRKAN_GPU_BUNDLE          the bundle folder (default <checkout>/.gpu_bundle)
#   MMRKAN_CACHE_DIR           cache root (default ~/.cache/mmrkan): prepare's venv, the rehearsal's
#                              wheels of the GPU machine's packages
#   MMRKAN_GPU_CHECK_PYTHON    the GPU machine's python (default python3)
#   MMRKAN_GPU_CHECK_BUDGET    seconds for all stages on the GPU machine (default 450)
#   MMRKAN_REHEARSE_PYTHON     a Python 3.12 interpreter for --rehearse (default: found on PATH or
#                              in ~/.pyenv/versions)
set -euo pipefail

MMRKAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${MMRKAN_GPU_BUNDLE:-$MMRKAN_ROOT/.gpu_bundle}"
CACHE_DIR="${MMRKAN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrkan}/gpu_check"
STAGES="$MMRKAN_ROOT/tools/gpu_check/run_stages.py"
PLATFORM_ARGS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
               --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
               --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# The GPU machine's packages that mmrkan's stack and the stages use (its versions where known:
# tools/gpu_check/gpu_machine_packages.txt): what the rehearsal's stand-in venv gets.
MACHINE_PACKAGES=(torch==2.11.0 torchvision==0.26.0 triton==3.6.0 numpy==2.5.2 scipy matplotlib
                  opencv-python-headless pytest pytest-xdist ninja pybind11 timm regex rich tqdm
                  pyyaml packaging pillow six einops click markdown zipp "setuptools<82" wheel)

log() { printf '[gpu_check] %s\n' "$*" >&2; }
die() { printf '[gpu_check] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '4,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# A venv with what prepare.py needs (packaging), kept in the cache.
prepare_python() {
    local venv="$CACHE_DIR/prepare-venv"
    if ! "$venv/bin/python" -c 'import packaging.utils' 2>/dev/null; then
        log "creating $venv (with packaging)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check packaging \
            2> >(grep -v 'is ignored: it is neither' >&2)
    fi
    echo "$venv/bin/python"
}

prepare() {
    command -v git >/dev/null || die "--prepare needs git (to measure the working tree that is sent)"
    "$(prepare_python)" "$MMRKAN_ROOT/tools/gpu_check/prepare.py" --bundle "$BUNDLE" \
        2> >(grep -v 'is ignored: it is neither' >&2)
    local rel="${BUNDLE#"$MMRKAN_ROOT"/}"
    cat <<MSG
[gpu_check] Run on the GPU machine (device tool), from the checkout's root:
    run(command="PYTHONUNBUFFERED=1 bash tools/gpu_check.sh \$OUT", carry=["$rel"], timeout_s=570)
  The stages stop themselves after ${MMRKAN_GPU_CHECK_BUDGET:-450} s. The script installs the bundle with the
  device README's command (into a fresh target folder, put first on PYTHONPATH):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/mmrkan-gpu-check/site $rel/wheels/*.whl
  Results come back as \$OUT/gpu_check.json and \$OUT/gpu_check.log; the last lines printed are
  a table (stage, result, figure).
MSG
}

find_python312() {
    local candidate
    for candidate in "${MMRKAN_REHEARSE_PYTHON:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            command -v "$candidate" || echo "$candidate"
            return 0
        fi
    done
    return 1
}

rehearse() {
    local out="$1" start=$SECONDS py312 wheelhouse venv
    prepare >/dev/null
    py312="$(find_python312)" || die "--rehearse needs a Python 3.12 interpreter (the GPU machine's \
version, so the bundle's cp312 wheels install as they are): set MMRKAN_REHEARSE_PYTHON"
    # The GPU machine's packages, once: a few GB (torch 2.11.0 with its CUDA 13.0 wheels).
    wheelhouse="$CACHE_DIR/machine-cp312"
    local key; key="$(printf '%s\n' "${MACHINE_PACKAGES[@]}" | sha256sum | cut -c1-16)"
    if [ ! -f "$wheelhouse/.complete-$key" ]; then
        log "downloading the GPU machine's packages for the stand-in venv into $wheelhouse (once)"
        mkdir -p "$wheelhouse"
        "$py312" -m pip download -q --disable-pip-version-check -d "$wheelhouse" \
            "${MACHINE_PACKAGES[@]}" 2> >(grep -v 'is ignored: it is neither' >&2)
        touch "$wheelhouse/.complete-$key"
    fi
    REHEARSAL_SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/mmrkan-rehearse.XXXXXX")"
    trap 'rm -rf "$REHEARSAL_SCRATCH"' EXIT
    local scratch="$REHEARSAL_SCRATCH"
    venv="$scratch/venv"
    log "stand-in of the GPU machine: $venv ($("$py312" --version))"
    "$py312" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index \
        --find-links "$wheelhouse" "${MACHINE_PACKAGES[@]}"
    local dry_run="$venv/bin/python -m pip install --dry-run -q --disable-pip-version-check \
--no-index --no-deps --ignore-installed --python-version 3.12 --implementation cp \
${PLATFORM_ARGS[*]} --only-binary=:all: --target $scratch/dry-run $BUNDLE/wheels/*.whl"
    local rc=0
    "$venv/bin/python" "$STAGES" --mode rehearse --out "$out" --bundle "$BUNDLE" \
        --work "$scratch/work" --bundle-check "$dry_run" || rc=$?
    log "rehearsal finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s (exit $rc)"
    return "$rc"
}

gpu() {
    local out="$1" py="${MMRKAN_GPU_CHECK_PYTHON:-python3}"
    [ -d "$BUNDLE/wheels" ] || die "no bundle at $BUNDLE: run 'bash tools/gpu_check.sh --prepare' \
on the CPU machine and carry that folder"
    "$py" "$STAGES" --mode gpu --out "$out" --bundle "$BUNDLE" --work /tmp/mmrkan-gpu-check \
        --budget "${MMRKAN_GPU_CHECK_BUDGET:-450}"
}

case "${1:-}" in
    --prepare) [ $# -eq 1 ] || usage; prepare ;;
    --rehearse) [ $# -eq 2 ] || usage; rehearse "$(mkdir -p "$2" && cd "$2" && pwd)" ;;
    -h|--help|'') usage ;;
    -*) log "unknown option: $1"; usage ;;
    *) [ $# -eq 1 ] || usage; gpu "$(mkdir -p "$1" && cd "$1" && pwd)" ;;
esac
