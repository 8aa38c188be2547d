"""SIGTERM mid-run (how HTCondor evicts): status interrupted, exit 143, the trace so far flushed."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_ARGS, cli_env, event_names, run_traces, train_cmd
from profiler.contract import vocab

pytestmark = pytest.mark.slow   # spawns training processes

PROGRESS = re.compile(r"\|\s*(\d+)/(\d+)")


def _run_until_steps(args: list[str], steps: int, timeout: float = 240) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a run and return once its progress bar shows `steps` finished steps."""
    proc = subprocess.Popen(train_cmd(*args), cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reached = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        buf = ""
        while chunk := proc.stderr.read(64):
            err.append(chunk)
            buf = (buf + chunk)[-400:]
            if any(int(m.group(1)) >= steps for m in PROGRESS.finditer(buf)):
                reached.set()
        reached.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not reached.wait(0.2):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"run never reached step {steps}: {''.join(err)[-2000:]}")
    assert proc.poll() is None, f"run ended before the signal: {''.join(err)[-2000:]}"
    return proc, err


def _finish(proc: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the run to end and return its stdout; its stderr stays with the pump thread
    (communicate() would read it too, and close it under the pump)."""
    proc.wait(timeout=timeout)
    assert proc.stdout is not None
    return proc.stdout.read()


def _check_interrupted(run: Path, min_steps: int, workers: list[str]) -> None:
    info = json.loads((run / vocab.RUN_JSON).read_text())
    assert info["status"] == vocab.STATUS_INTERRUPTED
    assert "SIGTERM" in info["message"]
    assert info["results"]["steps"] >= min_steps
    traces = run_traces(run)
    assert sorted(t.name.split(".")[0] for t in traces) == workers
    for t in traces:     # flushed on the way out: a complete, loadable trace with the steps so far
        assert any(n.startswith(vocab.TORCH_PROFILER_STEP) for n in event_names(t))
    lines = (run / vocab.SAMPLES_CSV).read_text().splitlines()
    assert lines[0].split(",") == list(vocab.SAMPLES_HEADER) and len(lines) > 1


# the profiler records from step 1 until the end, so a signal at any later step finds it active
LONG = ["--max-steps", "100000", "--train-size", "1000000", "--profile-active", "100000"]


def test_sigterm_mid_run_single(tmp_path: Path) -> None:
    proc, err = _run_until_steps([*TINY_ARGS, *LONG, "--out", str(tmp_path)], steps=3)
    proc.send_signal(signal.SIGTERM)
    out = _finish(proc, 120)
    assert proc.returncode == 128 + signal.SIGTERM, "".join(err)[-2000:]
    assert "run interrupted" in out
    _check_interrupted(tmp_path / "single-1cpu-b8", 3, ["rank0"])


def test_sigterm_mid_run_ddp_reaches_every_rank(tmp_path: Path) -> None:
    proc, err = _run_until_steps(["--strategy", "ddp", "--gpus", "2", *TINY_ARGS, *LONG,
                                  "--out", str(tmp_path)], steps=3)
    proc.send_signal(signal.SIGTERM)      # to the parent only: it forwards to the ranks
    _finish(proc, 180)
    assert proc.returncode == 128 + signal.SIGTERM, "".join(err)[-2000:]
    _check_interrupted(tmp_path / "ddp-2cpu-b8", 3, ["rank0", "rank1"])
