#!/usr/bin/env bash
# The test command: installs what is missing (idempotent, see tools/setup_env.sh), checks that the
# CUDA kernels compile (no GPU needed), runs the pytest suite, then the op, checkpoint, model and
# registry tests on the oldest supported torch (tools/run_tests_oldest.sh, its own venv).
# Extra arguments go to the main pytest run. MMRKAN_SKIP_OLDEST_TORCH=1 skips the oldest-torch run
# (CI never sets it: its first run builds a second mmcv and torch 2.1.2 venv, ~13 more minutes).
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
main_status=0
"$PY" -m pytest tests "$@" || main_status=$?
oldest_status=0
if [ "${MMRKAN_SKIP_OLDEST_TORCH:-0}" = 1 ]; then
    echo "[run_tests] MMRKAN_SKIP_OLDEST_TORCH=1: skipping the oldest-torch tests" >&2
else
    bash "$ROOT/tools/run_tests_oldest.sh" || oldest_status=$?
fi
echo "[run_tests] main suite: exit $main_status; oldest torch: exit $oldest_status" >&2
[ "$main_status" -eq 0 ] && [ "$oldest_status" -eq 0 ]
