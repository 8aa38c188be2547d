"""models.ddp: the ranks are torchrun's, and a rank's failure or death reaches run.json by name."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO, TINY_ARGS, cli_env, run_train, train_cmd
from models.ddp import threads_per_rank
from profiler.contract import vocab

pytestmark = pytest.mark.slow   # spawns training processes


def test_ranks_are_started_by_torchrun_and_take_their_rank_from_its_environment(tmp_path: Path) -> None:
    from models.ddp import run_ddp
    from models.loop import StopFlag
    from models.train import prepare
    cfg = prepare([*TINY_ARGS, "--strategy", "ddp", "--gpus", "2", "--max-steps", "2", "--no-profile",
                   "--out", str(tmp_path / "traces")])
    cfg.run_dir.mkdir(parents=True)
    work = tmp_path / "work"
    outcome = run_ddp(cfg, StopFlag(), workdir=work)
    assert (outcome.results.steps, outcome.results.images, outcome.interrupted) == (2, 2 * 8, 0)
    reports = [json.loads((work / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["local_rank"], r["world_size"], r["status"]) for r in reports] == [(0, 0, 2, "ok"),
                                                                                          (1, 1, 2, "ok")]
    assert [r["run_id"] for r in reports] == [cfg.name, cfg.name]                # --rdzv-id, via TORCHELASTIC_RUN_ID
    assert [r["restart_count"] for r in reports] == ["0", "0"]
    assert [r["master_addr"] for r in reports] == ["127.0.0.1", "127.0.0.1"]
    assert reports[0]["master_port"] == reports[1]["master_port"] and int(reports[0]["master_port"]) > 0
    # both ranks are children of one torchrun process, itself a child of this one
    assert reports[0]["ppid"] == reports[1]["ppid"] != os.getpid()
    assert reports[0]["pid"] != reports[1]["pid"]
    for r in reports:
        assert r["launcher"][1:3] == ["-m", "torch.distributed.run"], r["launcher"]
        assert r["launcher"][r["launcher"].index("--nproc-per-node") + 1] == "2"
        assert int(r["omp_num_threads"]) == r["torch_threads"] == threads_per_rank(2)


def test_ddp_fail_at_step_is_recorded_with_the_ranks_message(tmp_path: Path) -> None:
    res = run_train(["--strategy", "ddp", "--gpus", "2", *TINY_ARGS, "--max-steps", "6", "--fail-at-step", "3",
                     "--no-profile", "--out", str(tmp_path)])
    assert res.returncode == 1, res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and re.match(r"error: run failed: rank [01]: DeliberateFailure: --fail-at-step 3", errors[0])
    info = json.loads((tmp_path / "ddp-2cpu-b8" / vocab.RUN_JSON).read_text())
    assert info["status"] == vocab.STATUS_FAILED
    assert re.match(r"rank [01]: DeliberateFailure: --fail-at-step 3: deliberate failure", info["message"])


def _rank_pids(root: int, deadline: float) -> dict[int, int]:
    """RANK -> pid of the models.ddp_rank processes under root, once both are there."""
    while time.monotonic() < deadline:
        found = {}
        for p in psutil.Process(root).children(recursive=True):
            try:
                if "models.ddp_rank" in p.cmdline() and "RANK" in (env := p.environ()):
                    found[int(env["RANK"])] = p.pid
            except psutil.Error:
                continue
        if len(found) == 2:
            return found
        time.sleep(0.2)
    pytest.fail("the two ranks never showed up")


def test_a_killed_rank_fails_the_run_naming_that_rank(tmp_path: Path) -> None:
    proc = subprocess.Popen(train_cmd("--strategy", "ddp", "--gpus", "2", *TINY_ARGS, "--max-steps", "100000",
                                      "--train-size", "1000000", "--no-profile", "--out", str(tmp_path)),
                            cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = _rank_pids(proc.pid, time.monotonic() + 120)
        run = tmp_path / "ddp-2cpu-b8"
        deadline = time.monotonic() + 120       # training has started: TensorBoard events from rank 0
        while not list(run.glob("events.out.tfevents.*.train")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(pids[1], 9)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    info = json.loads((run / vocab.RUN_JSON).read_text())
    assert info["status"] == vocab.STATUS_FAILED
    assert info["message"].startswith("rank 1: ended without reporting an error"), info["message"]
