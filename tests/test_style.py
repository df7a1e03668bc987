"""The code keeps the style setup.cfg sets ([flake8]), checked in every test run."""
import subprocess
import sys

from tests.conftest import PROJECT_DIR


def test_flake8_finds_nothing():
    paths = ['corehq', 'tests', 'bench', 'settings.py', 'manage.py', 'urls.py']
    result = subprocess.run([sys.executable, '-m', 'flake8', *paths], cwd=PROJECT_DIR, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
