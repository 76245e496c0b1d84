#!/usr/bin/env bash
# The test command: installs what is missing (idempotent, see tools/setup_env.sh), checks that the
# CUDA kernels compile (no GPU needed), then runs the pytest suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/tools/setup_env.sh")"
# CI always compiles the CUDA sources (nvcc is there); elsewhere only where a CUDA toolkit is.
if [ "${CI:-}" = true ] || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
    bash "$ROOT/tools/check_cuda_build.sh" "$PY"
else
    echo "[run_tests] no nvcc at ${CUDA_HOME:-/usr/local/cuda}/bin: skipping the CUDA compile check" >&2
fi
cd "$ROOT"
exec "$PY" -m pytest tests "$@"
