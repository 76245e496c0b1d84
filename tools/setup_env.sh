#!/usr/bin/env bash
# Creates (or updates) the mmrkan environment, idempotently.
#
# Default: a virtual environment in <checkout>/.venv with the pinned, verified OpenMMLab stack.
# MMRKAN_USE_ACTIVE_ENV=1 installs into the currently active Python instead (keeps a user's own
# CUDA torch when it is supported). The mmcv wheel, which takes ~20 minutes to compile, is cached
# outside the checkout in ${MMRKAN_CACHE_DIR:-~/.cache/mmrkan}, keyed by mmcv, torch and Python.
#
# Logs go to stderr; the last line on stdout is the environment's python: PY=$(bash tools/setup_env.sh)
set -euo pipefail

MMRKAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
MIN_TORCH="2.4"
MMCV_VERSION="2.1.0"
CACHE_DIR="${MMRKAN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrkan}"

log() { printf '[mmrkan setup] %s\n' "$*" >&2; }
die() { printf '[mmrkan setup] ERROR: %s\n' "$*" >&2; exit 1; }

created_venv=0
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ "$created_venv" = 1 ]; then
        log "setup failed (exit $rc): removing the half-built $MMRKAN_ROOT/.venv"
        rm -rf "$MMRKAN_ROOT/.venv"
    fi
}
trap on_exit EXIT

if [ "${MMRKAN_USE_ACTIVE_ENV:-0}" = 1 ]; then
    PY="$(command -v python || command -v python3)" || die "MMRKAN_USE_ACTIVE_ENV=1 but no python on PATH"
    log "using the active environment: $PY"
else
    PY="$MMRKAN_ROOT/.venv/bin/python"
    if [ ! -x "$PY" ]; then
        base_python="${MMRKAN_BASE_PYTHON:-python3.11}"
        command -v "$base_python" >/dev/null || die "$base_python not found; set MMRKAN_BASE_PYTHON to a Python 3.11 interpreter"
        log "creating $MMRKAN_ROOT/.venv with $base_python"
        created_venv=1
        "$base_python" -m venv "$MMRKAN_ROOT/.venv"
    fi
fi
# pip -q still warns about every empty local index folder of this machine's pip config: drop those lines.
pip_install() {
    "$PY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# Everything that decides the environment's contents; unchanged => nothing to do.
stamp_file="$("$PY" -c 'import sys; print(sys.prefix)')/.mmrkan-setup-stamp"
stamp="$(cat "$MMRKAN_ROOT/tools/setup_env.sh" "$MMRKAN_ROOT/setup.py" \
         $(find "$MMRKAN_ROOT/mmrkan/ops/csrc" -type f 2>/dev/null | sort) | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && "$PY" -c 'import mmrkan._ext' 2>/dev/null; then
    log "environment up to date ($PY)"
    echo "$PY"
    exit 0
fi
rm -f "$stamp_file"

# 1. torch: keep a supported one, otherwise install the pinned, verified pair.
torch_version="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)"
if [ -n "$torch_version" ] && "$PY" - "$MIN_TORCH" <<'PYEOF'
import sys, torch
from packaging.version import Version
sys.exit(0 if Version(torch.__version__.split('+')[0]) >= Version(sys.argv[1]) else 1)
PYEOF
then
    log "keeping installed torch $torch_version"
    "$PY" -c 'import torchvision' 2>/dev/null || pip_install "$TORCHVISION_PIN"
else
    log "installing $TORCH_PIN $TORCHVISION_PIN (about a minute from the local disk)"
    pip_install "$TORCH_PIN" "$TORCHVISION_PIN"
fi
pip_install "setuptools<82" wheel ninja packaging  # mmcv's setup.py and mmengine's Config need pkg_resources
torch_version="$("$PY" -c 'import torch; print(torch.__version__)')"
py_tag="$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"

# 2. mmcv with its compiled ops, from source, cached.
wheel_dir="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$torch_version-$py_tag-$(uname -m)"
mmcv_wheel="$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$mmcv_wheel" ]; then
    log "building mmcv $MMCV_VERSION with compiled ops against torch $torch_version (20-25 min on 2 cores, once per machine)"
    build_dir="$(mktemp -d)"
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
        --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build_dir" \
        || die "could not download the mmcv $MMCV_VERSION source distribution"
    tar -xzf "$build_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
    src="$build_dir/mmcv-$MMCV_VERSION"
    # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes C++17.
    if "$PY" -c 'import sys, torch; from packaging.version import Version as V; sys.exit(V(torch.__version__.split("+")[0]) < V("2.14"))'; then
        sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    fi
    log "compile log: $build_dir/build.log"
    if ! (cd "$src" && env -u FORCE_CUDA MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps . \
            -w "$build_dir/dist" >"$build_dir/build.log" 2>&1); then
        tail -n 40 "$build_dir/build.log" >&2
        die "building mmcv $MMCV_VERSION failed; full log in $build_dir/build.log"
    fi
    mkdir -p "$(dirname "$wheel_dir")"
    tmp_wheel_dir="$(mktemp -d "$(dirname "$wheel_dir")/.partial.XXXXXX")"
    cp "$build_dir"/dist/mmcv-*.whl "$tmp_wheel_dir/"
    rm -rf "$wheel_dir" && mv "$tmp_wheel_dir" "$wheel_dir"  # atomic: no half-written cache entry
    rm -rf "$build_dir"
    mmcv_wheel="$(ls "$wheel_dir"/mmcv-*.whl | head -n1)"
fi
log "installing the OpenMMLab stack (mmcv from $mmcv_wheel)"
pip_install "mmengine==0.10.7" "$mmcv_wheel"

# 3. mmrkan itself (editable, builds mmrkan._ext) with the rest of the pins from setup.py.
log "installing mmrkan (editable) and its pinned dependencies"
pip_install --no-build-isolation -e "$MMRKAN_ROOT[tests]" "torch==${torch_version%%+*}"

"$PY" -c 'import mmcv.ops, mmdet, mmseg, mmpretrain, mmrkan._ext' \
    || die "the installed environment does not import (mmcv.ops, mmdet, mmseg, mmpretrain, mmrkan._ext)"
echo "$stamp" >"$stamp_file"
created_venv=0
log "environment ready: $PY"
echo "$PY"
