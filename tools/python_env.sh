# Sourced by tools/dist_*.sh and tools/slurm_*.sh: sets PYTHON, the interpreter they launch.
# PYTHON=/path/to/python wins; else the active environment's python (a virtualenv or conda
# environment is active); else the checkout's own .venv (made by tools/setup_env.sh); else the
# python on PATH.
if [ -z "${PYTHON:-}" ]; then
    _checkout_python="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/python"
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ] && [ -x "$_checkout_python" ]; then
        PYTHON="$_checkout_python"
    else
        PYTHON=python
    fi
    unset _checkout_python
fi
