"""`pip install .` without extras is the analysis alone: no torch, and `python -m analysis.report` works.

A real install into a fresh venv from the package registries (docs/design.md: a submit node or laptop
runs the report where torch is absent), from a copy of the source tree so the build leaves nothing in
the checkout. pip inherits this machine's configuration (pip.conf, constraints) from the environment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.step.breakdown import analyse_trace
from conftest import REPO

TRACE = REPO / "tests" / "data" / "cpu_single_tiny.pt.trace.json.gz"
SOURCES = ("pyproject.toml", "README.md", "analysis", "profiler", "models")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_plain_install_has_no_torch_and_runs_the_report(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pip = _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)], tmp_path, env, 600)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

    no_torch = _run([py, "-c", "import torch"], tmp_path, env, 60)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    listed = _run([py, "-m", "pip", "list", "--format", "json"], tmp_path, env, 60)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"scalescope", "numpy", "msgspec", "matplotlib", "tqdm", "tensorboard"} <= names
    assert not names & {"torch", "torchvision", "nvidia-ml-py", "psutil", "torch-tb-profiler", "orjson"}

    run = tmp_path / "traces" / "single-1cpu-b4"
    run.mkdir(parents=True)
    shutil.copy(TRACE, run / TRACE.name)
    # cwd outside the checkout: the installed package is what runs, not the source tree
    rep = _run([py, "-m", "analysis.report", str(run.parent), "--format", "json", "--no-html"], tmp_path, env, 300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    (row,) = [r for r in json.loads(rep.stdout)["runs"] if r["name"] == "single-1cpu-b4"]
    a = analyse_trace(TRACE)
    assert row["steps_profiled"] == len(a.steps) == 2
    assert row["step_ms"] == pytest.approx(a.mean_step_us() / 1000)
    where = _run([py, "-c", "import analysis, profiler.contract as c; print(analysis.__file__, c.__file__)"],
                 tmp_path, env, 60).stdout.split()
    assert len(where) == 2 and all(str(venv) in w for w in where), where     # installed, subpackages included

    # the TensorBoard dashboard: its entry point loads torch-free and its frontend is in the installed package
    probe = ("import json, sys; from importlib import metadata, resources; "
             "(ep,) = [e for e in metadata.entry_points(group='tensorboard_plugins') if e.name == 'scalescope']; "
             "cls = ep.load(); static = resources.files('analysis.dashboard').joinpath('static'); "
             "print(json.dumps({'plugin': cls.plugin_name, 'static': str(static), "
             "'files': sorted(p.name for p in static.iterdir()), 'torch': 'torch' in sys.modules}))")
    plug = _run([py, "-c", probe], tmp_path, env, 120)
    assert plug.returncode == 0, plug.stderr[-3000:]
    got = json.loads(plug.stdout)
    assert (got["plugin"], got["torch"], str(venv) in got["static"]) == ("scalescope", False, True), got
    assert {"index.js", "ipc.js", "charts.js", "style.css"} <= set(got["files"]), got["files"]
