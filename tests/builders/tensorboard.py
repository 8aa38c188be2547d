"""Helpers for the TensorBoard tests (not tests themselves): a logdir of the tiny runs with a corrupt
run beside them, and a real `tensorboard --logdir` server stopped by its process group.

Shared by test_tbdash.py, test_tensorboard_server.py and test_tbdash_server.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import run_dirs
from profiler.netport import free_port

READY_TIMEOUT_S = 60.0          # bounded wait for the server and its plugins to load the runs
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")   # Debian package; `make test` installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
T = TypeVar("T")


# --- a logdir -----------------------------------------------------------------------------------

CORRUPT = "broken-1cpu-b8"
GARBAGE = b"\x1f\x8b this is not a gzip stream, nor JSON"


def make_logdir(tiny_runs: Path, root: Path) -> Path:
    """root/traces with a copy of every tiny run and one folder whose only trace is garbage."""
    logdir = root / "traces"
    for src in run_dirs(tiny_runs):
        shutil.copytree(src, logdir / src.name)
    (logdir / CORRUPT).mkdir(parents=True)
    (logdir / CORRUPT / "rank0.1.pt.trace.json.gz").write_bytes(GARBAGE)
    return logdir


# --- the server ---------------------------------------------------------------------------------

def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(what: str, probe: Callable[[], T | None], proc: subprocess.Popen[bytes], log: Path,
             timeout: float = READY_TIMEOUT_S) -> T:
    """Poll probe() until it returns a value; fail with the server log if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tensorboard exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            value = probe()
            if value is not None:
                return value
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout:.0f} s (last error: {last}):\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def serve(logdir: Path, home: Path, env: dict[str, str], cwd: Path | None = None) -> Iterator[Server]:
    """A real `tensorboard --logdir` on a free 127.0.0.1 port until the generator closes (stopped by its
    process group, pass or fail); its log in `home`."""
    port = free_port()
    log = home / "tensorboard.log"
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
           "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        server = Server(f"http://127.0.0.1:{port}", proc, log)
        wait_for("plugin listing", lambda: get_json(server.url + "/data/plugins_listing") or None, proc, log)
        yield server
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (tensorboard + its data server), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
