"""`python -m analysis.whatif` runs where torch cannot be imported (its modules: test_analysis_imports; the blocker: conftest)."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO, cli_env, no_torch_child

# `python -m analysis.whatif --help` in the torch-blocked child; no torch module may load on the way
_RUN_HELP = no_torch_child(r"""
import runpy
sys.argv = ["analysis.whatif", "--help"]
try:
    runpy.run_module("analysis.whatif", run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
assert not [m for m in sys.modules if m.partition(".")[0] == "torch"]
""")


def test_python_m_analysis_whatif_runs_without_torch(tmp_path) -> None:
    """The CLI entry point itself (its __main__) under the torch blocker: --help exits 0."""
    res = subprocess.run([sys.executable, "-c", _RUN_HELP], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "usage:" in res.stdout
