"""setup.py refuses to build the extension against a torch other than the environment's."""
import os
import re
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_setup_with_torch(tmp_path, torch_init: str, folder: str = 'site') -> subprocess.CompletedProcess:
    """``python setup.py --version`` with a stand-in ``torch`` package first on the path."""
    package = tmp_path / folder / 'torch'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text(torch_init)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / folder))
    return subprocess.run([sys.executable, 'setup.py', '--version'], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_build_without_torch_explains_build_isolation(tmp_path):
    result = run_setup_with_torch(tmp_path, "raise ImportError('No module named torch')")
    assert result.returncode != 0
    assert 'cannot import torch (No module named torch)' in result.stderr
    assert 'pip install --no-build-isolation -e .' in result.stderr


def test_build_against_the_torch_of_an_isolated_build_env_is_refused(tmp_path):
    result = run_setup_with_torch(tmp_path, "__version__ = '2.14.1'",
                                  folder='pip-build-env-abc123/overlay')
    assert result.returncode != 0
    assert "torch 2.14.1 from pip's isolated build environment" in result.stderr


@pytest.mark.parametrize('version', ['2.0.1', '2.16.0', '1.13.1+cu117'])
def test_unsupported_torch_is_refused_naming_the_range(tmp_path, version):
    result = run_setup_with_torch(tmp_path, f'__version__ = {version!r}')
    assert result.returncode != 0
    assert f'torch {version} is installed; mmrkan supports torch >=2.1,<2.16' in result.stderr


def test_setup_env_refuses_the_same_torch_range_as_setup_py():
    with open(os.path.join(REPO_ROOT, 'setup.py')) as f:
        setup_py = f.read()
    with open(os.path.join(REPO_ROOT, 'tools', 'setup_env.sh')) as f:
        setup_env = f.read()
    bounds = re.search(r'MIN_TORCH, MAX_TORCH = \((\d+), (\d+)\), \((\d+), (\d+)\)', setup_py)
    assert bounds, 'setup.py no longer defines MIN_TORCH, MAX_TORCH as two (major, minor) tuples'
    assert f'MIN_TORCH="{bounds[1]}.{bounds[2]}"' in setup_env
    assert f'MAX_TORCH="{bounds[3]}.{bounds[4]}"' in setup_env


def make_env_with(tmp_path, **versions: str) -> str:
    """A venv (no pip) whose metadata claims the given distributions, e.g. torch='2.0.1'."""
    env = tmp_path / 'user-env'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env)], check=True)
    site_packages = next(env.glob('lib/python*/site-packages'))
    for name, version in versions.items():
        dist_info = site_packages / f'{name}-{version}.dist-info'
        dist_info.mkdir()
        (dist_info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    return str(env)


def run_setup_env_in(env: str, tmp_path) -> subprocess.CompletedProcess:
    environ = dict(os.environ, MMRKAN_USE_ACTIVE_ENV='1', MMRKAN_CACHE_DIR=str(tmp_path / 'cache'),
                   PATH=f'{env}/bin:{os.environ["PATH"]}')
    return subprocess.run(['bash', os.path.join(REPO_ROOT, 'tools', 'setup_env.sh')], env=environ,
                          capture_output=True, text=True, timeout=120)


def snapshot(folder: str) -> list:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, dirs, files in os.walk(folder) for name in dirs + files)


def test_setup_env_refuses_an_active_torch_below_the_floor_and_changes_nothing(tmp_path):
    env = make_env_with(tmp_path, torch='2.0.1')
    before = snapshot(env)
    result = run_setup_env_in(env, tmp_path)
    assert result.returncode != 0
    assert ('the active environment has torch 2.0.1; mmrkan supports torch >=2.1,<2.16. Nothing '
            'was changed.') in result.stderr
    assert snapshot(env) == before


def test_setup_env_refuses_an_active_mmcv_of_another_version_and_changes_nothing(tmp_path):
    env = make_env_with(tmp_path, torch='2.1.2', mmcv='2.2.0')
    before = snapshot(env)
    result = run_setup_env_in(env, tmp_path)
    assert result.returncode != 0
    assert 'the active environment has mmcv 2.2.0; mmrkan needs mmcv 2.1.0' in result.stderr
    assert 'Nothing was changed.' in result.stderr
    assert snapshot(env) == before
