"""Who waits for whom: collectives matched across ranks, split into waiting and transfer."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.api import Analysis
from analysis.step.straggler import Collective, straggler

REPO = Path(__file__).resolve().parents[1]


def _c(step: int, *durs: float) -> list[Collective]:
    return [Collective(step, "gloo:all_reduce", d) for d in durs]


def test_the_shortest_span_arrived_last_and_the_rest_is_waiting() -> None:
    per_rank = {"rank0": _c(1, 5000, 900) + _c(2, 5200, 1100),     # µs: rank0 waits for rank1 in 3 of 4
                "rank1": _c(1, 1000, 1000) + _c(2, 1000, 1000)}
    walls = {"rank0": {1: 20.0, 2: 22.0}, "rank1": {1: 21.0, 2: 21.0}}
    shares = {"rank1": {"compute": 0.3, "idle": 0.6, "communication": 0.1}}
    s = straggler(per_rank, walls, shares)
    assert (s.matched, s.steps, s.skipped_steps, s.straggler) == (4, 2, [], "rank1")
    r0, r1 = s.ranks
    assert (r0.wait_ms, r1.wait_ms) == (pytest.approx(4.15), pytest.approx(0.05))   # (4000+4200+100) / 2 steps; 100 / 2
    assert r1.last_share == 0.75 and r0.last_share == 0.25
    assert s.transfer_ms == pytest.approx((1000 + 900 + 1000 + 1000) / 2 / 1e3)
    assert s.skew_ms == pytest.approx(0.0) and list(s.doing) == ["idle", "compute"]   # communication left out


def test_steps_with_different_counts_are_skipped_and_no_clear_rank_is_named() -> None:
    per_rank = {"a": _c(1, 100, 300) + _c(2, 100), "b": _c(1, 300, 100) + _c(2, 100, 100)}
    s = straggler(per_rank, {"a": {1: 1.0}, "b": {1: 1.0}}, {})
    assert (s.skipped_steps, s.matched, s.straggler) == ([2], 2, None)     # 1 of 2 each: below the 60 % bar
    # last at 3 of 4, but waiting as much as the other rank: ranks taking turns, none named
    even = {"a": _c(1, 100, 100, 100, 900), "b": _c(1, 300, 300, 300, 100)}
    s = straggler(even, {"a": {1: 1.0}, "b": {1: 1.0}}, {})
    assert [r.last_share for r in s.ranks] == [0.75, 0.25] and s.straggler is None
    assert straggler({"a": _c(1, 100)}, {}, {}) is None                      # one rank: nothing to compare


@pytest.mark.slow
def test_a_slowed_rank_of_a_real_gloo_ddp_job_is_named_and_the_other_waits(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p))
    cmd = [sys.executable, "-m", "profiler.attach", "--out", str(tmp_path / "traces"), "--", sys.executable, "-m",
           "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           str(REPO / "tests" / "attach_scripts" / "ddp_train.py"), "--steps", "7", "--slow-rank", "1", "--slow", "0.25"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = Analysis([tmp_path / "traces" / "ddp_train-2cpu"]).summary()
    s = summary["runs"][0]["straggler"]
    assert s["straggler"] == "rank1" and s["matched"] >= 3
    r0, r1 = (next(r for r in s["ranks"] if r["rank"] == k) for k in ("rank0", "rank1"))
    assert r1["last_share"] >= 0.99
    assert 200 < r0["wait_ms"] < 400            # rank0 waits out rank1's 250 ms sleep inside the all-reduce
    assert r1["wait_ms"] < 0.2 * r0["wait_ms"]
    assert max(s["doing"], key=s["doing"].get) == "idle"        # rank1 was sleeping: nothing ran
    [finding] = [f for f in summary["findings"] if f["kind"] == "straggler"]
    assert finding["text"].startswith("rank1 is the straggler: it arrived last at 100 %")
    assert any(r["kind"] == "straggler" and r["basis"] == "measured" for r in summary["recommendations"])
