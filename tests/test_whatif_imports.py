"""`python -m analysis.whatif` runs where torch cannot be imported (its modules: test_analysis_imports)."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO, cli_env
from test_analysis_imports import _CHILD


def test_python_m_analysis_whatif_runs_without_torch(tmp_path) -> None:
    """The CLI entry point itself (its __main__) under the torch blocker: --help exits 0."""
    child = _CHILD.split("failed = {}")[0] + "import runpy, sys\nsys.argv = ['analysis.whatif', '--help']\n" \
        "try:\n    runpy.run_module('analysis.whatif', run_name='__main__')\nexcept SystemExit as e:\n" \
        "    assert e.code == 0, e.code\nassert not [m for m in sys.modules if m.partition('.')[0] == 'torch']\n"
    res = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "usage:" in res.stdout
