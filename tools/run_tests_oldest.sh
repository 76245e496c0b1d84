#!/usr/bin/env bash
# The op, checkpoint, model and registry tests on the oldest supported torch (2.1.2, numpy < 2,
# mmcv 2.1.0 built against it), in the venv that `MMRKAN_TORCH_VERSION=2.1.2 tools/setup_env.sh`
# keeps in ${MMRKAN_CACHE_DIR:-~/.cache/mmrkan}/envs (first run: ~13 min, mostly building mmcv;
# then about a minute plus the tests). The tests run from that venv's synced copy of the checkout,
# whose extension is built there, so the checkout's in-place build is never touched.
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OLDEST_TORCH="2.1.2"
CACHE_DIR="${MMRKAN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrkan}"
mkdir -p "$CACHE_DIR/envs"
# One run at a time per machine: the venv and its source copy are shared by every checkout.
exec 9>"$CACHE_DIR/envs/.torch$OLDEST_TORCH.lock"
flock 9
PY="$(MMRKAN_TORCH_VERSION="$OLDEST_TORCH" bash "$ROOT/tools/setup_env.sh")"
cd "$(dirname "$(dirname "$PY")")/src/mmrkan"
echo "[run_tests_oldest] torch $OLDEST_TORCH: tests of $(pwd)" >&2
"$PY" -m pytest tests/test_ops tests/test_engine tests/test_models tests/test_registry.py "$@"
