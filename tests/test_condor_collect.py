"""analysis.condor.collect: returned run tarballs -> traces/<sweep>/<run>/, all-or-nothing, idempotent,
never overwriting a different run. The tarballs here are built the way condor/run.sh packs
(<sweep>/<run>/files); test_condor_runsh.py feeds it tarballs from real runs.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from analysis.condor import collect

ROOT = Path(__file__).resolve().parents[1]


def make_tarball(path: Path, files: dict[str, bytes | str], extra: list[tarfile.TarInfo] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(raw))
        for info in extra:
            tar.addfile(info)
    return path


def run_json(status: str = "complete", name: str = "single-1gpu-b64", seed: int = 0) -> str:
    return json.dumps({"schema": 1, "name": name, "status": status, "config": {"seed": seed}})


def run_files(sweep: str = "seed", run: str = "single-1gpu-b64", status: str = "complete", seed: int = 0):
    base = f"{sweep}/{run}"
    return {f"{base}/run.json": run_json(status, run, seed), f"{base}/samples.csv": "time_ns,source,device,metric,value\n",
            f"{base}/rank0.1.pt.trace.json.gz": b"\x1f\x8b fake", f"{base}/condor_wrapper.json": '{"exit_code": 0}'}


def test_lays_each_tarball_into_traces_sweep_run(tmp_path: Path) -> None:
    results, traces = tmp_path / "results", tmp_path / "traces"
    make_tarball(results / "scalescope_seed_7_0_single-1gpu-b64.tar.gz", run_files())
    make_tarball(results / "scalescope_seed_7_1_dp-2gpu-b128.tar.gz", run_files(run="dp-2gpu-b128", status="failed"))
    lines: list[str] = []
    done = collect.collect([results], traces, echo=lines.append)
    assert sorted(p.name for p in (traces / "seed").iterdir()) == ["dp-2gpu-b128", "single-1gpu-b64"]
    assert json.loads((traces / "seed/dp-2gpu-b128/run.json").read_text())["status"] == "failed"
    assert (traces / "seed/single-1gpu-b64/rank0.1.pt.trace.json.gz").read_bytes() == b"\x1f\x8b fake"
    assert len(done.new) == 2 and not done.already
    assert any("(failed)" in line for line in lines)
    assert not [p for p in (traces / "seed").iterdir() if p.name.startswith(".collect-")]


def test_collecting_the_same_runs_again_changes_nothing(tmp_path: Path) -> None:
    results, traces = tmp_path / "results", tmp_path / "traces"
    make_tarball(results / "a.tar.gz", run_files())
    collect.collect([results], traces, echo=lambda _: None)
    marker = traces / "seed/single-1gpu-b64/samples.csv"
    marker.write_text("edited by the user\n")
    again = collect.collect([results], traces, echo=lambda _: None)
    assert not again.new and len(again.already) == 1
    assert marker.read_text() == "edited by the user\n"


def test_refuses_to_overwrite_a_different_run_and_writes_nothing(tmp_path: Path) -> None:
    results, traces = tmp_path / "results", tmp_path / "traces"
    make_tarball(results / "a.tar.gz", run_files(seed=0))
    collect.collect([results], traces, echo=lambda _: None)
    later = tmp_path / "later"                                    # a second submission's results
    make_tarball(later / "b.tar.gz", run_files(run="dp-2gpu-b128"))
    make_tarball(later / "c.tar.gz", run_files(seed=1))            # same name, another run
    before = sorted(p.relative_to(traces) for p in traces.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "analysis.condor.collect", str(later), "--into", str(traces)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "already holds a different run" in proc.stderr and "c.tar.gz" in proc.stderr
    assert sorted(p.relative_to(traces) for p in traces.rglob("*")) == before   # b was not collected either
    assert json.loads((traces / "seed/single-1gpu-b64/run.json").read_text())["config"]["seed"] == 0


def test_two_returned_tarballs_with_one_name_but_different_runs_are_refused(tmp_path: Path) -> None:
    results = tmp_path / "results"
    make_tarball(results / "scalescope_seed_7_0_x.tar.gz", run_files(seed=0))
    make_tarball(results / "scalescope_seed_8_0_x.tar.gz", run_files(seed=1))
    with pytest.raises(collect.CollectError, match="both hold seed/single-1gpu-b64 but different runs"):
        collect.collect([results], tmp_path / "traces", echo=lambda _: None)
    assert not (tmp_path / "traces").exists()


@pytest.mark.parametrize("bad_name, why", [
    ("../evil/run.json", "unsafe member"),
    ("/abs/run.json", "unsafe member"),
    ("loose.txt", "not inside <sweep>/<run>/"),
    ("seed/loose.txt", "not inside <sweep>/<run>/"),
])
def test_refuses_members_outside_sweep_run(tmp_path: Path, bad_name: str, why: str) -> None:
    tb = make_tarball(tmp_path / "r" / "x.tar.gz", {**run_files(), bad_name: "x"})
    with pytest.raises(collect.CollectError, match=why):
        collect.collect([tb], tmp_path / "traces", echo=lambda _: None)
    assert not (tmp_path / "traces").exists()


def test_refuses_links_and_unreadable_tarballs(tmp_path: Path) -> None:
    link = tarfile.TarInfo("seed/single-1gpu-b64/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tb = make_tarball(tmp_path / "r" / "x.tar.gz", run_files(), extra=[link])
    with pytest.raises(collect.CollectError, match="not a plain file or folder"):
        collect.collect([tb], tmp_path / "traces", echo=lambda _: None)
    broken = tmp_path / "r2" / "y.tar.gz"
    broken.parent.mkdir()
    broken.write_bytes(b"partial transfer")
    with pytest.raises(collect.CollectError, match="not a readable .tar.gz"):
        collect.collect([broken.parent], tmp_path / "traces", echo=lambda _: None)


def test_cli_reports_missing_and_empty_results(tmp_path: Path) -> None:
    assert collect.main([str(tmp_path / "nope"), "--into", str(tmp_path / "t")]) == 2
    (tmp_path / "empty").mkdir()
    assert collect.main([str(tmp_path / "empty"), "--into", str(tmp_path / "t")]) == 0


def test_collect_imports_no_torch() -> None:
    code = "import sys, analysis.condor.collect; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
