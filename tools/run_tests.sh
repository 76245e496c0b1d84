#!/usr/bin/env bash
# The test command: installs what is missing (idempotent, see tools/setup_env.sh), checks that the
# CUDA kernels compile (no GPU needed), then runs the pytest suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/tools/setup_env.sh")"
bash "$ROOT/tools/check_cuda_build.sh" "$PY"
cd "$ROOT"
exec "$PY" -m pytest tests "$@"
