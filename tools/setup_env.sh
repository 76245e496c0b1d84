#!/usr/bin/env bash
# Creates (or updates) an mmrkan environment, idempotently. Three kinds:
#
#   bash tools/setup_env.sh
#       <checkout>/.venv with the pinned, verified stack (torch 2.14.1) and the test extras;
#       mmrkan installed in editable mode (its extension built in place in the checkout).
#   MMRKAN_USE_ACTIVE_ENV=1 bash tools/setup_env.sh
#       the active Python environment, changed as little as possible: its torch is kept (a torch
#       outside the supported range is refused before anything changes), its mmcv is kept when its
#       compiled ops import (built from source and installed only when they do not), only missing
#       packages are added (no test extras), and what was kept and what changed is listed.
#   MMRKAN_TORCH_VERSION=2.1.2 bash tools/setup_env.sh
#       a separate venv with exactly that torch (numpy < 2 below torch 2.3), for CI's oldest-torch
#       run: ${MMRKAN_CACHE_DIR:-~/.cache/mmrkan}/envs/torch<version>-<python>. mmrkan is installed
#       (editable, with the test extras) from a copy of the checkout kept inside that venv
#       (src/mmrkan, synced on every call), so its extension is built out of tree and never
#       replaces the checkout's in-place build.
#
# The mmcv wheel, which takes 9 to 12 minutes to compile on 2 cores, is cached outside the checkout in
# ${MMRKAN_CACHE_DIR:-~/.cache/mmrkan}/wheels, keyed by mmcv, torch and Python.
# Logs go to stderr; the last line on stdout is the environment's python: PY=$(bash tools/setup_env.sh)
set -euo pipefail

MMRKAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_PIN_VERSION="2.14.1"
# The supported torch range, the same as SUPPORTED_TORCH in setup.py (tests/test_setup.py checks).
MIN_TORCH="2.1"
MAX_TORCH="2.16"
MMCV_VERSION="2.1.0"
MMENGINE_PIN="mmengine==0.10.7"
CACHE_DIR="${MMRKAN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrkan}"

log() { printf '[mmrkan setup] %s\n' "$*" >&2; }
die() { printf '[mmrkan setup] ERROR: %s\n' "$*" >&2; exit 1; }

# torchvision release paired with a torch release (2.1.2 -> 0.16.2, 2.14.1 -> 0.29.1).
torchvision_for() {
    local major minor patch
    IFS=. read -r major minor patch <<<"${1%%+*}"
    echo "0.$((minor + 15)).${patch:-0}"
}

mode=venv
[ "${MMRKAN_USE_ACTIVE_ENV:-0}" = 1 ] && mode=active
if [ -n "${MMRKAN_TORCH_VERSION:-}" ]; then
    [ "$mode" = venv ] || die "MMRKAN_TORCH_VERSION and MMRKAN_USE_ACTIVE_ENV=1 exclude each other: the first creates its own venv"
    [[ "$MMRKAN_TORCH_VERSION" =~ ^2\.([0-9]+)\.[0-9]+$ ]] || die "MMRKAN_TORCH_VERSION=$MMRKAN_TORCH_VERSION: expected a torch release such as 2.1.2 (supported: >=$MIN_TORCH,<$MAX_TORCH)"
    minor="${BASH_REMATCH[1]}"
    if [ "$minor" -lt "${MIN_TORCH#2.}" ] || [ "$minor" -ge "${MAX_TORCH#2.}" ]; then
        die "MMRKAN_TORCH_VERSION=$MMRKAN_TORCH_VERSION is outside the supported torch range >=$MIN_TORCH,<$MAX_TORCH"
    fi
    mode=pinned
    TORCH_PIN_VERSION="$MMRKAN_TORCH_VERSION"
fi

created_venv=""
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$created_venv" ]; then
        log "setup failed (exit $rc): removing the half-built $created_venv"
        rm -rf "$created_venv"
    fi
    rm -f "${constraints:-}" "${packages_before:-}" "${packages_after:-}"
}
trap on_exit EXIT

create_venv() {  # $1: folder
    local base_python="${MMRKAN_BASE_PYTHON:-python3.11}"
    command -v "$base_python" >/dev/null || die "$base_python not found; set MMRKAN_BASE_PYTHON to a Python 3.11 interpreter"
    log "creating $1 with $base_python"
    mkdir -p "$(dirname "$1")"
    created_venv="$1"
    "$base_python" -m venv "$1"
}

case "$mode" in
    active)
        PY="$(command -v python || command -v python3)" || die "MMRKAN_USE_ACTIVE_ENV=1 but no python on PATH"
        log "using the active environment: $PY"
        ;;
    venv)
        PY="$MMRKAN_ROOT/.venv/bin/python"
        [ -x "$PY" ] || create_venv "$MMRKAN_ROOT/.venv"
        ;;
    pinned)
        base_tag="$("${MMRKAN_BASE_PYTHON:-python3.11}" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')" \
            || die "${MMRKAN_BASE_PYTHON:-python3.11} not found; set MMRKAN_BASE_PYTHON to a Python 3.11 interpreter"
        env_dir="$CACHE_DIR/envs/torch$TORCH_PIN_VERSION-$base_tag"
        PY="$env_dir/bin/python"
        [ -x "$PY" ] || create_venv "$env_dir"
        ;;
esac

# pip -q still warns about every empty local index folder of this machine's pip config: drop those lines.
pip_install() {
    "$PY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}
installed_version() {  # $1: distribution name; prints nothing if it is not installed
    "$PY" - "$1" <<'PYEOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
PYEOF
}
in_torch_range() {  # $1: torch version
    "$PY" - "$1" "$MIN_TORCH" "$MAX_TORCH" <<'PYEOF'
import re, sys
parse = lambda v: tuple(int(p) for p in re.match(r'(\d+)\.(\d+)', v).groups())
version, low, high = map(parse, sys.argv[1:])
sys.exit(0 if low <= version < high else 1)
PYEOF
}

# The mmrkan sources this environment installs: the checkout, or (pinned) its synced copy.
source_dir="$MMRKAN_ROOT"
if [ "$mode" = pinned ]; then
    source_dir="$env_dir/src/mmrkan"
    mkdir -p "$source_dir"
    # Files of the checkout (tracked and untracked-but-not-ignored, as they are on disk now).
    file_list="$(mktemp)"
    if git -C "$MMRKAN_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$MMRKAN_ROOT" && git -c core.quotePath=off ls-files -co --exclude-standard | while read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done) >"$file_list"
    else
        (cd "$MMRKAN_ROOT" && find . -path ./.venv -prune -o -path ./build -prune -o -path ./work_dirs -prune \
            -o -path ./data -prune -o -name __pycache__ -prune -o -type f ! -name '*.so' -print | sed 's|^\./||') >"$file_list"
    fi
    tar -C "$MMRKAN_ROOT" -cf - -T "$file_list" | tar -C "$source_dir" -xf -
    # Drop copies of files the checkout no longer has (build outputs stay: ninja reuses them).
    (cd "$source_dir" && find . \( -path ./build -o -name '*.egg-info' -o -name __pycache__ -o -path ./mmrkan/.mim \) -prune \
        -o \( -type f ! -name '*.so' -print \) | sed 's|^\./||' | LC_ALL=C sort) \
        | LC_ALL=C comm -23 - <(LC_ALL=C sort "$file_list") | (cd "$source_dir" && xargs -r -d '\n' rm -f)
    rm -f "$file_list"
    log "mmrkan sources synced to $source_dir (its extension is built there)"
fi

# Everything that decides the environment's contents; unchanged => nothing to do.
stamp_file="$("$PY" -c 'import sys; print(sys.prefix)')/.mmrkan-setup-stamp"
stamp="$(cat "$MMRKAN_ROOT/tools/setup_env.sh" "$MMRKAN_ROOT/setup.py" \
         $(find "$MMRKAN_ROOT/mmrkan/ops/csrc" -type f 2>/dev/null | sort) | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && (cd "$source_dir" && "$PY" -c 'import mmrkan._ext') 2>/dev/null; then
    log "environment up to date ($PY)"
    echo "$PY"
    exit 0
fi
rm -f "$stamp_file"

# Builds without debug information: Python's CFLAGS carry -g, which nearly doubles the compile time
# of every file that includes torch's headers (mmcv has 83) and bloats the wheels. A CFLAGS in the
# environment replaces Python's (setuptools 81 does), so they are spelled out here, -O3 included.
export CFLAGS="${CFLAGS:-$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")')} -g0"

# 0. Checks that change nothing: a torch or mmcv we cannot work with is refused here.
torch_version="$(installed_version torch)"
mmcv_version="$(installed_version mmcv)"
if [ "$mode" = active ]; then
    if [ -n "$torch_version" ] && ! in_torch_range "$torch_version"; then
        die "the active environment has torch $torch_version; mmrkan supports torch >=$MIN_TORCH,<$MAX_TORCH. Nothing was changed. Use an environment with a supported torch, or run without MMRKAN_USE_ACTIVE_ENV to get a .venv with torch $TORCH_PIN_VERSION."
    fi
    if [ -n "$mmcv_version" ] && [ "$mmcv_version" != "$MMCV_VERSION" ]; then
        die "the active environment has mmcv $mmcv_version; mmrkan needs mmcv $MMCV_VERSION (mmdet 3.3 and mmseg 1.2.2 refuse mmcv >= 2.2). Nothing was changed. Install mmcv $MMCV_VERSION (e.g. \`mim install mmcv==$MMCV_VERSION\` on torch 2.1), or remove it and rerun: this script then builds it."
    fi
    packages_before="$(mktemp)"
    "$PY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | sort >"$packages_before"
fi

# 1. torch: keep a supported one (active env, or this script's venv), otherwise install the pinned pair.
if [ "$mode" = pinned ] && [ "${torch_version%%+*}" != "$TORCH_PIN_VERSION" ]; then
    torch_version=""
fi
if [ -n "$torch_version" ] && in_torch_range "$torch_version"; then
    log "keeping the installed torch $torch_version"
else
    log "installing torch==$TORCH_PIN_VERSION torchvision==$(torchvision_for "$TORCH_PIN_VERSION")"
    pip_install "torch==$TORCH_PIN_VERSION" "torchvision==$(torchvision_for "$TORCH_PIN_VERSION")"
fi
# With the local part (2.1.2+cu121): the mmcv wheel cache is keyed by it.
torch_version="$("$PY" -c 'import torch; print(torch.__version__)')" \
    || die "torch $(installed_version torch) is installed in $PY but does not import (see above)"
# Every later pip call keeps torch (and the other kept packages) as they are.
constraints="$(mktemp)"
echo "torch==${torch_version%%+*}" >"$constraints"
torch_minor="$(echo "$torch_version" | cut -d. -f2)"
if [ "$torch_minor" -lt 3 ]; then
    echo "numpy<2" >>"$constraints"  # torch < 2.3 wheels are built against numpy 1.x
fi
if [ -z "$(installed_version torchvision)" ]; then
    log "installing torchvision==$(torchvision_for "$torch_version").* (none installed; the one paired with torch $torch_version)"
    pip_install -c "$constraints" "torchvision==$(torchvision_for "$torch_version" | cut -d. -f1-2).*"
fi
echo "torchvision==$(installed_version torchvision)" >>"$constraints"

# Build tools: mmcv's setup.py and mmengine's Config need pkg_resources (gone in setuptools 82).
if ! "$PY" -c 'import pkg_resources' 2>/dev/null; then
    log "installing setuptools<82: the installed setuptools $(installed_version setuptools) has no pkg_resources, which mmcv's build and mmengine's Config need"
    pip_install -c "$constraints" "setuptools<82"
fi
missing_tools=()
for tool in wheel ninja packaging; do
    [ -n "$(installed_version "$tool")" ] || missing_tools+=("$tool")
done
[ "${#missing_tools[@]}" -eq 0 ] || pip_install -c "$constraints" "${missing_tools[@]}"
[ -n "$(installed_version mmengine)" ] || pip_install -c "$constraints" "$MMENGINE_PIN"
py_tag="$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"

# 2. mmcv with its compiled ops: the installed one when they import, else built from source (cached).
mmcv_ops_import=ok
mmcv_ops_error="$("$PY" -c 'import mmcv.ops' 2>&1)" || mmcv_ops_import=failed
mmcv_ops_error="$(tail -n 1 <<<"$mmcv_ops_error")"
if [ -n "$mmcv_version" ] && [ "$mmcv_ops_import" = ok ]; then
    log "keeping the installed mmcv $mmcv_version (its compiled ops import)"
else
    wheel_dir="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$torch_version-$py_tag-$(uname -m)"
    mmcv_wheel="$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$mmcv_wheel" ]; then
        log "building mmcv $MMCV_VERSION with compiled ops against torch $torch_version (9 to 12 min on 2 cores, once per machine)"
        build_dir="$(mktemp -d)"
        "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
            --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build_dir" \
            || die "could not download the mmcv $MMCV_VERSION source distribution"
        tar -xzf "$build_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
        src="$build_dir/mmcv-$MMCV_VERSION"
        # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes C++17.
        if [ "$torch_minor" -ge 14 ]; then
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
    if [ -n "$mmcv_version" ]; then
        # Same version number: without --force-reinstall pip would keep the broken one.
        log "replacing the installed mmcv $mmcv_version, whose compiled ops do not import ($mmcv_ops_error), by $mmcv_wheel"
        pip_install -c "$constraints" --force-reinstall --no-deps "$mmcv_wheel"
        pip_install -c "$constraints" "$mmcv_wheel"  # its dependencies, if any are missing
    else
        log "installing mmcv from $mmcv_wheel"
        pip_install -c "$constraints" "$mmcv_wheel"
    fi
fi
echo "mmcv==$(installed_version mmcv)" >>"$constraints"

# 3. mmrkan itself (editable, builds mmrkan._ext) with the rest of the pins from setup.py.
target="$source_dir"
[ "$mode" = active ] || target="$source_dir[tests]"
log "installing mmrkan (editable, from $source_dir) and the dependencies it is missing"
pip_install -c "$constraints" --no-build-isolation -e "$target"

# openmim for the mim tests (venv only), without what it declares: its opendatalab -> openxlab
# dependency pins old setuptools, rich and requests. These are all its commands import.
if [ "$mode" = venv ] && [ -z "$(installed_version openmim)" ]; then
    log "installing openmim 0.3.9 (--no-deps) and the packages its commands import"
    pip_install -c "$constraints" click colorama model-index pandas requests tabulate
    pip_install -c "$constraints" --no-deps "openmim==0.3.9"  # last: pip then reports no conflict
fi

(cd "$source_dir" && "$PY" -c 'import mmcv.ops, mmdet, mmseg, mmpretrain, mmrkan._ext') \
    || die "the installed environment does not import (mmcv.ops, mmdet, mmseg, mmpretrain, mmrkan._ext)"
echo "$stamp" >"$stamp_file"
created_venv=""

if [ "$mode" = active ]; then
    packages_after="$(mktemp)"
    "$PY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | sort >"$packages_after"
    log "kept: torch $torch_version, torchvision $(installed_version torchvision), mmcv $(installed_version mmcv)"
    changes="$("$PY" - "$packages_before" "$packages_after" <<'PYEOF'
import sys
def read(path):
    return dict(line.strip().split('==', 1) for line in open(path) if '==' in line)
before, after = read(sys.argv[1]), read(sys.argv[2])
for name in sorted(after):
    if name not in before:
        print(f'added {name} {after[name]}')
    elif before[name] != after[name]:
        print(f'changed {name} {before[name]} -> {after[name]}')
for name in sorted(set(before) - set(after)):
    print(f'removed {name} {before[name]}')
PYEOF
)"
    if [ -n "$changes" ]; then
        while read -r line; do log "  $line"; done <<<"$changes"
    else
        log "  no package was added or changed"
    fi
fi
log "environment ready: $PY"
echo "$PY"
