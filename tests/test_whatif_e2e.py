"""End to end: the tiny 2-process DDP run predicted from the tiny single run, both measured by the real runner."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli_env


def test_tiny_ddp_predicted_from_tiny_single_has_every_term(tiny_runs: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "analysis.whatif", str(tiny_runs), "--format", "json"], cwd=REPO,
                         env=cli_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["input_runs"] == ["single-1cpu-b8"]
    [check] = doc["checks"]
    assert (check["run"], check["predicted_from"]) == ("ddp-2cpu-b8", "single-1cpu-b8")
    assert check["predicted_ms"] > 0 and check["measured_ms"] > 0      # accuracy is the benchmark's, not a test's
    ddp = next(p for p in doc["predictions"] if p["strategy"] == "ddp" and p["devices"] == 2)
    names = [t["name"] for t in ddp["terms"]]
    assert names == ["forward", "backward", "loss", "optimizer", "all-reduce (exposed)", "wait for the slowest rank",
                     "host", "data"]
    assert all(t["basis"] and t["ms"] >= 0 for t in ddp["terms"])
    # the single run calibrated its own step as 2 DDP ranks: compute, all-reduce and Adam come from it
    by_name = {t["name"]: t["basis"] for t in ddp["terms"]}
    assert "as 2 DDP ranks × 1 thread(s) on 4 images each" in by_name["forward"]
    assert "the calibrated rank's backward" in by_name["all-reduce (exposed)"]
    assert "the calibrated ranks' wait at each step's end" in by_name["wait for the slowest rank"]
    assert ddp["step_ms"] == sum(t["ms"] for t in ddp["terms"])
    assert ddp["memory_per_device_bytes"] > 0 and ddp["bytes_per_step"] > 0
