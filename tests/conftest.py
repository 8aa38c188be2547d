"""Shared fixtures: real tiny training runs made once per test session through the real CLI.

`tiny_runs` is the traces root holding two run folders written by `python -m models.train`
in subprocesses (the same command a user types):
  single-1cpu-b8/  one CPU process, 4 steps, profiler active on steps 1-2
  ddp-2cpu-b8/     DDP, two gloo processes on 127.0.0.1, 4 per rank, same schedule
Both use width 0.0625 (a 0.55M-parameter copy of the seed graph), so the pair costs ~30 s.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from analysis.records import TraceAnalysis
from profiler.contract import vocab

REPO = Path(__file__).resolve().parents[1]
# The peer tools' reference traces and expected outputs (HTA, torch-tb-profiler), beside the clone in the workspace.
ANCHORS = REPO.parent / "shared" / "anchors"
TINY_ARGS: tuple[str, ...] = (
    "--device", "cpu", "--width", "0.0625", "--batch-size", "8", "--train-size", "256",
    "--workers", "1", "--profile-wait", "0", "--profile-warmup", "1", "--profile-active", "2",
    "--max-steps", "4", "--sample-period", "0.05",
)
TINY_RUNS = {"single-1cpu-b8": ("--strategy", "single"),
             "ddp-2cpu-b8": ("--strategy", "ddp", "--gpus", "2")}


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: the repo importable, no stray CUDA/threads settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def trace_files(root: Path) -> list[Path]:
    """Every Kineto trace file under root (e.g. the tiny_runs traces root)."""
    return sorted(Path(root).rglob("*.pt.trace.json*"))


def run_dirs(root: Path) -> list[Path]:
    """The run folders under root that hold traces."""
    return sorted({p.parent for p in trace_files(root)})


def run_traces(run_dir: Path) -> list[Path]:
    """The gzipped Kineto traces directly in one run folder (*.pt.trace.json.gz), sorted by name."""
    return sorted(Path(run_dir).glob("*" + vocab.TRACE_SUFFIXES[0]))


def event_names(trace: Path, ph: str | None = None) -> list[str]:
    """Every event's name in a trace file (gzipped or not), in file order; only phase `ph` events when given
    ("X": complete events, the spans and ops)."""
    opener = gzip.open if Path(trace).name.endswith(".gz") else open
    with opener(trace, "rt") as f:
        events = json.load(f)["traceEvents"]
    return [e.get("name", "") for e in events if ph is None or e.get("ph") == ph]


def step_names(trace: Path) -> list[str]:
    """The distinct ProfilerStep#n spans in a trace, sorted."""
    return sorted({n for n in event_names(trace, ph="X") if n.startswith(vocab.TORCH_PROFILER_STEP)})


# The prelude of a child interpreter where torch cannot be imported: a meta-path finder refuses torch and
# torchvision before anything else is imported. no_torch_child() appends the child's own code.
NO_TORCH_PRELUDE = r"""
import importlib, importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is blocked: this module must import without torch")
        return None

sys.meta_path.insert(0, NoTorch())
"""


def no_torch_child(code: str) -> str:
    """Source for `python -c` that runs `code` with torch blocked (NO_TORCH_PRELUDE first)."""
    return NO_TORCH_PRELUDE + code


def hta_kept_compute(a: TraceAnalysis) -> float:
    """Our compute over the steps HTA keeps: all but the last ProfilerStep (HTA drops GPU work
    launched from the last step on); the whole trace when there is none. One GPU per process,
    so step compute is that GPU's (HTA merges a process's GPUs into one timeline)."""
    steps = a.steps if len(a.steps) < 2 else a.steps[:-1]
    assert len(a.devices) == 1, f"{a.path.name}: one GPU per process, so step compute is that GPU's"
    return sum(s.parts_us[vocab.COMPUTE] for s in steps)


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A real disk of `size` (a tmpfs mounted at `path`) for tests that need one to fill; unmounted after."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small disk needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def load_submitcheck() -> ModuleType:
    """condor/submitcheck.py (a script, not a package module) imported as `submitcheck`."""
    spec = importlib.util.spec_from_file_location("submitcheck", REPO / "condor" / "submitcheck.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["submitcheck"] = mod      # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "models.train", *args]


def run_train(args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m models.train ARGS` to completion (text output captured)."""
    return subprocess.run(train_cmd(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Traces root with single-1cpu-b8/ and ddp-2cpu-b8/ (both status complete)."""
    root = tmp_path_factory.mktemp("traces")
    procs = {name: subprocess.Popen(train_cmd(*extra, *TINY_ARGS, "--out", str(root)), cwd=REPO,
                                    env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
             for name, extra in TINY_RUNS.items()}
    failures = []
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if proc.returncode != 0 or not (root / name / "run.json").is_file():
            failures.append(f"{name}: exit {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}")
    if failures:
        pytest.fail("tiny_runs fixture: training run failed:\n" + "\n".join(failures))
    return root
