"""Hostile and careless input on every surface that takes it: the tarballs HTCondor jobs return (collect),
run names the report draws, the job wrapper's signals and macros. Real tarballs (tarfile and GNU tar),
real signals, a real small disk where a full one is needed. Expected errors: one line, exit 2, nothing
written -- or a complete, correct result."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from analysis.condor import collect
from analysis.text.terminal import shown
from conftest import small_disk

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def run_json(name: str = "single-1gpu-b64", status: str = "complete") -> bytes:
    return json.dumps({"schema": 2, "name": name, "status": status}).encode()


def tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file(name: str, data: bytes = b"x", **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def run_members(sweep: str = "seed", run: str = "single-1gpu-b64") -> list[tuple[tarfile.TarInfo, bytes]]:
    return [file(f"{sweep}/{run}/run.json", run_json(run)), file(f"{sweep}/{run}/rank0.1.pt.trace.json", b"{}")]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "analysis.condor.collect", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)))


def one_line(res: subprocess.CompletedProcess[str], text: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], res.stderr


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# --- collect ----------------------------------------------------------------------------------------
def test_a_sparse_member_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    src = tmp_path / "src" / "seed" / "single-1gpu-b64"
    src.mkdir(parents=True)
    (src / "run.json").write_bytes(run_json())
    with open(src / "rank0.1.pt.trace.json", "wb") as f:     # 20 GB of holes: a few bytes on disk
        f.truncate(20 << 30)
    tb = tmp_path / "results" / "x.tar.gz"
    tb.parent.mkdir()
    subprocess.run(["tar", "--sparse", "-czf", str(tb), "-C", str(tmp_path / "src"), "seed"], check=True)
    assert tb.stat().st_size < 10_000
    res = cli(str(tb), "--into", str(tmp_path / "traces"), cwd=tmp_path)
    one_line(res, "rank0.1.pt.trace.json' is a sparse file (it would unpack to 21,474,836,480 bytes); refused")
    assert not (tmp_path / "traces").exists()


def test_members_and_the_total_are_capped(tmp_path: Path) -> None:
    big = tarball(tmp_path / "r" / "big.tar.gz", [*run_members(), file("seed/single-1gpu-b64/blob", b"0" * 5000)])
    one_line(cli(str(big), "--into", "traces", "--max-bytes", "4K", cwd=tmp_path),
             "member 'seed/single-1gpu-b64/blob' is 5,000 bytes, over the 4,096-byte cap (--max-bytes)")
    a = tarball(tmp_path / "r2" / "a.tar.gz", [*run_members(run="a"), file("seed/a/blob", b"0" * 3000)])
    tarball(tmp_path / "r2" / "b.tar.gz", [*run_members(run="b"), file("seed/b/blob", b"0" * 3000)])
    one_line(cli(str(a.parent), "--into", "traces", "--max-bytes", "4K", cwd=tmp_path),
             "the runs to collect hold more than 4,096 bytes (--max-bytes)")
    assert not (tmp_path / "traces").exists()
    one_line(cli(str(a.parent), "--into", "traces", "--max-bytes", "lots", cwd=tmp_path), "not a size: 'lots'")


def test_a_dot_slash_prefix_is_the_same_run_and_collecting_again_changes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src" / "seed" / "single-1gpu-b64"
    src.mkdir(parents=True)
    (src / "run.json").write_bytes(run_json())
    (src / "rank0.1.pt.trace.json").write_text("{}")
    tb = tmp_path / "results" / "x.tar.gz"
    tb.parent.mkdir()
    subprocess.run(["tar", "-czf", str(tb), "./seed"], check=True, cwd=tmp_path / "src")
    first = cli(str(tb), "--into", "traces", cwd=tmp_path)
    assert first.returncode == 0 and "(complete) from x.tar.gz" in first.stdout, first.stderr
    assert everything(tmp_path / "traces") == ["seed", "seed/single-1gpu-b64", "seed/single-1gpu-b64/rank0.1.pt.trace.json",
                                               "seed/single-1gpu-b64/run.json"]
    again = cli(str(tb), "--into", "traces", cwd=tmp_path)
    assert again.returncode == 0 and "0 collected, 1 already there" in again.stdout


@pytest.mark.parametrize("members, text", [
    ([*run_members(), file("seed/single-1gpu-b64/x"), file("seed/single-1gpu-b64/x/y")],
     "'seed/single-1gpu-b64/x' is both a file and a folder"),
    ([*run_members(), file("seed/single-1gpu-b64/" + "n" * 300)], "has a name part longer than 255 bytes"),
    ([*run_members(), file("seed/single-1gpu-b64/run.json", b"{}")], "'seed/single-1gpu-b64/run.json' appears twice"),
], ids=["file-and-folder", "long-name", "twice"])
def test_members_that_cannot_be_unpacked_as_they_claim_are_one_line(tmp_path: Path, members, text: str) -> None:
    tb = tarball(tmp_path / "r" / "x.tar.gz", members)
    one_line(cli(str(tb), "--into", "traces", cwd=tmp_path), text)
    assert not (tmp_path / "traces").exists()


def test_an_impossible_pax_mtime_is_not_applied_and_the_run_is_collected(tmp_path: Path) -> None:
    members = [*run_members(), file("seed/single-1gpu-b64/a.txt", b"a", mtime="nan"),
               file("seed/single-1gpu-b64/b.txt", b"b", mtime="1e300")]
    tb = tarball(tmp_path / "r" / "x.tar.gz", members)
    res = cli(str(tb), "--into", "traces", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "traces" / "seed" / "single-1gpu-b64"
    assert (run / "a.txt").read_text() == "a" and (run / "b.txt").read_text() == "b"
    assert (run / "run.json").stat().st_mtime == 1_700_000_000
    assert abs((run / "a.txt").stat().st_mtime - time.time()) < 600      # unpacked now, not at "nan"


def test_a_failure_while_unpacking_leaves_nothing_of_any_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    tarball(results / "a.tar.gz", run_members(sweep="one"))
    tarball(results / "b.tar.gz", run_members(sweep="two"))
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "two").write_text("a file where the sweep folder goes\n")   # the second run cannot be placed
    res = cli(str(results), "--into", str(traces), cwd=tmp_path)
    one_line(res, "unpacking failed, nothing was collected")
    assert everything(traces) == ["two"]                                # the good run was not committed either


def test_a_disk_that_fills_while_unpacking_leaves_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        results = tmp_path / "results"
        for run in ("a", "b"):
            tarball(results / f"{run}.tar.gz", [*run_members(run=run), file(f"seed/{run}/blob", os.urandom(700_000))])
        res = cli(str(results), "--into", str(disk / "traces"), cwd=tmp_path)
        one_line(res, "No space left on device")
        assert everything(disk) == []


def test_names_with_terminal_escapes_are_printed_escaped(tmp_path: Path) -> None:
    evil = "run\x1b]0;owned\x07\x1b[31m"
    tb = tarball(tmp_path / "r" / "x.tar.gz", run_members(run=evil))
    res = cli(str(tb), "--into", "traces", cwd=tmp_path)
    assert res.returncode == 0 and "\x1b" not in res.stdout + res.stderr
    assert "run\\x1b]0;owned\\x07\\x1b[31m" in res.stdout
    assert (tmp_path / "traces" / "seed" / evil / "run.json").is_file()     # the name itself is kept
    assert shown("a\tb\nc") == "a\\tb\\nc"


# --- the report ------------------------------------------------------------------------------------------
def test_a_run_named_like_mathtext_is_drawn_literally_and_both_files_are_written(tmp_path: Path) -> None:
    run = tmp_path / "traces" / "run$\\undefinedmacro{$"
    run.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "cpu_single_tiny.pt.trace.json.gz", run / "rank0.1.pt.trace.json.gz")
    out = tmp_path / "report"
    res = subprocess.run([PY, "-m", "analysis.report", str(tmp_path / "traces"), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == ["run$\\undefinedmacro{$"]
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "undefinedmacro" in page
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.json"]     # no temp files left


def test_the_terminal_report_shows_escape_sequences_escaped(tmp_path: Path) -> None:
    run = tmp_path / "traces" / "r\x1b[2Jx"
    run.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "cpu_single_tiny.pt.trace.json.gz", run / "rank0.1.pt.trace.json.gz")
    for fmt in ("text", "markdown"):
        res = subprocess.run([PY, "-m", "analysis.report", str(tmp_path / "traces"), "--no-html", "--format", fmt],
                             capture_output=True, text=True, timeout=300, cwd=REPO)
        assert res.returncode == 0 and "\x1b" not in res.stdout and "r\\x1b[2Jx" in res.stdout, fmt


# --- condor/run.sh ------------------------------------------------------------------------------------
SLOW_PYTHON = f"""#!/bin/bash
# the job's python, slow at the import check (as a cold conda env or a pip install is)
if [ "$1" = "-c" ]; then touch "$MARK"; exec sleep 60; fi
exec {PY} "$@"
"""


def test_sigterm_during_setup_still_returns_the_tarball_interrupted(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    shutil.copy(REPO / "condor" / "run.sh", sandbox / "run.sh")
    slow = tmp_path / "slowpython"
    slow.write_text(SLOW_PYTHON)
    slow.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_CONDOR", "SCALESCOPE_"))}
    env.update(SCALESCOPE_PYTHON=str(slow), MARK=str(tmp_path / "mark"), SCALESCOPE_NO_INSTALL="1")
    job = subprocess.Popen(["bash", "./run.sh", "seed", "out.tar.gz", "--strategy", "single"], cwd=sandbox, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "mark").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    job.send_signal(signal.SIGTERM)                     # an eviction during the import check
    _, err = job.communicate(timeout=30)                # not the 60 s the check would take
    assert job.returncode == 143, err
    with tarfile.open(sandbox / "out.tar.gz") as tar:
        wrapper = json.loads(tar.extractfile("seed/failed-local.0/condor_wrapper.json").read())
    assert (wrapper["status"], wrapper["signal"], wrapper["stage"], wrapper["exit_code"]) == (
        "interrupted", "TERM", "import-check", 143)


def test_a_quote_in_a_macro_still_gives_valid_json(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    shutil.copy(REPO / "condor" / "run.sh", sandbox / "run.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_CONDOR", "SCALESCOPE_"))}
    env.update(SCALESCOPE_PYTHON=PY, SCALESCOPE_NO_INSTALL="1", CUDA_VISIBLE_DEVICES='0"\\\t')
    sweep = 'a"b\\c'
    res = subprocess.run(["bash", "./run.sh", sweep, "out.tar.gz", "--out", "x"], cwd=sandbox, env=env,
                         capture_output=True, text=True, timeout=120)   # --out is refused: bad input, packed
    assert res.returncode == 2, res.stderr
    with tarfile.open(sandbox / "out.tar.gz") as tar:
        wrapper = json.loads(tar.extractfile(f"{sweep}/failed-local.0/condor_wrapper.json").read())
    assert (wrapper["sweep"], wrapper["cuda_visible_devices"], wrapper["status"]) == (sweep, '0"\\\t', "failed")
    found = collect.read_tarball(sandbox / "out.tar.gz")
    assert [(r.sweep, r.status) for r in found] == [(sweep, "failed (no run.json)")]
