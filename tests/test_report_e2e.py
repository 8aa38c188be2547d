"""End to end over real runs: conftest's `tiny_runs` (a real CPU single run and a real 2-process gloo DDP
run) through `python -m analysis.report`."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import msgspec
import pytest

from analysis.report.cli import main
from conftest import cli_env, run_dirs
from profiler.contract import vocab
from profiler.cpualloc import SOURCE_AFFINITY, SOURCE_CGROUP, SOURCE_CONDOR, cpu_allocation

pytestmark = pytest.mark.slow


@pytest.fixture
def real_runs(tiny_runs: Path) -> list[Path]:
    return run_dirs(tiny_runs)


def test_report_over_real_cpu_runs(real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main([*map(str, real_runs), "--out", str(out), "--progress", "off"]) == 0
    text = capsys.readouterr().out
    summary = msgspec.json.decode((out / "summary.json").read_bytes())
    runs = {r["strategy"]: r for r in summary["runs"]}
    assert {"single", "ddp"} <= set(runs), sorted(runs)
    single, ddp = runs["single"], runs["ddp"]
    alloc = cpu_allocation(cli_env())            # the environment the tiny runs were started with
    assert alloc.source in (SOURCE_AFFINITY, SOURCE_CGROUP, SOURCE_CONDOR) and alloc.cpus > 0
    assert single["device_type"] == ddp["device_type"] == "cpu"
    assert single["devices"] == 1 and ddp["devices"] == 2 and len(ddp["trace_files"]) == 2
    for r in (single, ddp):
        assert r["step_ms_source"] == "trace" and r["steps_profiled"] >= 1
        assert sum(r["parts_ms"].values()) == pytest.approx(r["step_ms"], rel=1e-6)
        assert r["shares"][vocab.COMPUTE] > 0
        assert r["images_per_s_source"] == "run.json"
        assert r["errors"] == []
        # the runner recorded the job's allocation (what cpu_allocation finds here: affinity, a cgroup quota or
        # HTCondor's Cpus, whichever is smallest) and the sampler the tree's cores
        assert (r["cpus"], r["cpus_source"]) == (alloc.cpus, alloc.source)
        assert r["tree_cpu_cores"] is not None and 0.0 < r["tree_cpu_cores"] <= r["cpus"] * 1.3
    assert single["shares"][vocab.COMMUNICATION] == 0.0
    assert ddp["shares"][vocab.COMMUNICATION] > 0.0          # the gloo all-reduce is seen and counted
    assert ddp["baseline"] == single["name"]
    assert ddp["speedup"] == pytest.approx(ddp["images_per_s"] / single["images_per_s"])
    assert ddp["cost_model"]["bytes_per_step"] == pytest.approx(ddp["cost_model"]["parameter_bytes"])  # 2P(N−1)/N, N=2
    names = {r["name"] for r in summary["runs"]}
    assert all(f["run"] in names for f in summary["findings"])
    for name in names:
        assert name in text
    html = (out / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(base64.b64decode(s.split(",", 1)[1])[:4] == b"\x89PNG" for s in srcs)
