#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing (idempotent, see
# tools/setup_env.sh), generates the small shapes datasets if absent, trains and evaluates on the
# CPU, and prints the metrics. Extra arguments go to tools/demo.py (e.g. --task det).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/tools/setup_env.sh")"
cd "$ROOT"
exec "$PY" tools/demo.py "$@"
