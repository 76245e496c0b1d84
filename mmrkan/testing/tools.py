"""Running the command-line tools (``tools/*.py``) from tests: in this process, or as a process."""
import os
import runpy
import subprocess
import sys
from typing import Optional, Tuple
from unittest import mock


def run_script(capsys, path: str, *args: str) -> Tuple[int, str, str]:
    """Run the script ``path`` with ``args`` in this process (runpy, ``sys.argv`` set): the code
    path of the command line without paying the imports again. Returns (exit status, stdout,
    stderr), read from pytest's ``capsys`` fixture."""
    capsys.readouterr()
    with mock.patch.object(sys, 'argv', [path, *map(str, args)]):
        try:
            runpy.run_path(path, run_name='__main__')
            status = 0
        except SystemExit as exit_:
            status = exit_.code or 0
    out, err = capsys.readouterr()
    return status, out, err


def run_python(*args: str, cwd: str, env: Optional[dict] = None,
               timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python args`` as a process of this interpreter, ``env`` added to the environment."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))
