"""`python -m analysis.report`: exit codes, one-line errors, output formats, --tensorboard, the anchors."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from analysis.report.cli import main
from conftest import ANCHORS, REPO, cli_env
from profiler.contract.runjson import encode_json
from builders.runs import SAMPLES, run_info, write_run


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analysis.report", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A good single run (with samples.csv) beside a dp run whose only trace is corrupt."""
    root = tmp_path / "traces" / "seed"
    write_run(root, "single-1gpu-b64", run_info("single-1gpu-b64", "single", 1, 64, images_per_s=64000.0),
              samples=SAMPLES)
    bad = root / "dp-2gpu-b128"
    bad.mkdir(parents=True)
    (bad / "run.json").write_bytes(encode_json(run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=90000.0)))
    (bad / "rank0.1700000000000.pt.trace.json.gz").write_bytes(gzip.compress(b'{"traceEvents": [{"ph": "X", "ts'))
    return tmp_path / "traces"


def test_missing_path_is_one_line_exit_2(tmp_path: Path) -> None:
    p = cli(str(tmp_path / "nope"))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [f"python -m analysis.report: error: {tmp_path / 'nope'}: no such file or directory"]


def test_default_path_is_traces(tmp_path: Path) -> None:
    p = cli(cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.splitlines() == ["python -m analysis.report: error: traces: no such file or directory"]


def test_no_run_found_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    p = cli(str(tmp_path / "empty"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.splitlines()) == 1 and "no run folders" in p.stderr


def test_corrupt_trace_beside_a_good_run(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    p = cli(str(sweep), "--out", str(out))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    bad = sweep / "seed" / "dp-2gpu-b128" / "rank0.1700000000000.pt.trace.json.gz"
    errors = [line for line in p.stderr.splitlines() if line.startswith("python -m analysis.report: error:")]
    assert len(errors) == 1 and str(bad.resolve()) in errors[0] and "not valid JSON" in errors[0]
    runs_table = p.stdout.split("\n\n", 1)[0].splitlines()
    rows = {line.split()[0]: line.split() for line in runs_table if line.startswith(("single", "dp"))}
    assert rows["single-1gpu-b64"][1:8] == ["single", "1", "gpu", "64", "1.0", "64000", "1.00×"]
    assert rows["dp-2gpu-b128"][5:8] == ["–", "90000", "1.41×"]        # still in the table, from run.json
    summary = msgspec.json.decode((out / "summary.json").read_bytes())
    assert [r["name"] for r in summary["runs"]] == ["dp-2gpu-b128", "single-1gpu-b64"]
    assert len(summary["errors"]) == 1 and str(bad.resolve()) in summary["errors"][0]
    html = (out / "index.html").read_text()
    assert "single-1gpu-b64" in html and "not valid JSON" in html


def test_formats(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(sweep / "seed" / "single-1gpu-b64")
    assert main([good, "--format", "json", "--no-html"]) == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["runs"]
    assert row["name"] == "single-1gpu-b64" and row["step_ms"] == 1.0 and row["steps_profiled"] == 3
    assert row["shares"]["compute"] == 0.4 and row["shares"]["data_loading"] == 0.2
    assert row["samples"]["mean_gpu_util_pct"] == 55.0
    assert main([good, "--format", "markdown", "--no-html"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# scalescope report\n") and "| single-1gpu-b64 | single | 1 gpu | 64 | 1.0 |" in md
    assert main([good, "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "Findings:" in text and "DataLoader wait is 20 % of the step (0.2 of 1.0 ms" in text
    assert (tmp_path / "r" / "index.html").exists() and (tmp_path / "r" / "summary.json").exists()


def test_tensorboard_flag_writes_events_into_the_run(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = sweep / "seed" / "single-1gpu-b64"
    assert main([str(run_dir), "--no-html", "--tensorboard"]) == 0
    assert any("tfevents" in p.name and "scalescope" in p.name for p in run_dir.iterdir())
    assert "warning" not in capsys.readouterr().err


def test_tensorboard_flag_without_the_module(sweep: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "analysis.tensorboard.events", None)    # import now raises ImportError
    assert main([str(sweep / "seed" / "single-1gpu-b64"), "--no-html", "--tensorboard"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "warning" in line] == [
        line for line in err if line.startswith("python -m analysis.report: warning: --tensorboard: "
                                                 "analysis.tensorboard is not available")]
    assert len([line for line in err if "warning" in line]) == 1


def test_tb_profiler_note(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata
    try:
        version = metadata.version("torch-tb-profiler")
    except metadata.PackageNotFoundError:
        pytest.skip("torch-tb-profiler is not installed")
    if version != "0.4.3":
        pytest.skip(f"torch-tb-profiler {version} installed; the note is about 0.4.3")
    assert main([str(sweep / "seed" / "single-1gpu-b64"), "--no-html"]) == 0
    out = capsys.readouterr().out
    assert "torch-tb-profiler 0.4.3" in out and "DataLoader 0 %" in out


def test_help_explains() -> None:
    p = cli("--help")
    assert p.returncode == 0 and "--format" in p.stdout and "Exit status" in p.stdout


@pytest.mark.skipif(not ANCHORS.is_dir(), reason=f"peer anchors not present at {ANCHORS} (only in the workspace)")
def test_anchors_bare_trace_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ANCHORS), "--out", str(tmp_path / "r"), "--progress", "off"]) == 0
    out = capsys.readouterr().out
    assert "resnet50_num_workers_0" in out and "trace_filter" in out
    summary = msgspec.json.decode((tmp_path / "r" / "summary.json").read_bytes())
    runs = {r["name"]: r for r in summary["runs"]}
    w0, w4 = runs["resnet50_num_workers_0"], runs["resnet50_num_workers_4"]
    # the plugin's DataLoader share: 33.4 / 22.9 % (workers 0), 0.8 / 0.2 % (workers 4); we average both spans
    assert 0.20 < w0["shares"]["data_loading"] < 0.36 and w4["shares"]["data_loading"] < 0.02
    assert w0["strategy"] == "single" and w0["devices"] == 1 and w0["traces"] == 2     # recognised: one process
    # recognised from its traces: DDP spans, distributedInfo world size 128 (2 of its ranks' traces are here)
    assert (runs["trace_filter"]["strategy"], runs["trace_filter"]["devices"]) == ("ddp", 128)
    assert summary["errors"] == []
    assert any(f["run"] == "resnet50_num_workers_0" and f["kind"] == "data_loading" for f in summary["findings"])


def test_unwritable_out_is_one_line_exit_2(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main([str(sweep / "seed" / "single-1gpu-b64"), "--out", str(blocker)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "cannot write the report into" in err[0] and str(blocker) in err[0]


def test_progress_bar_on_request(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(sweep / "seed" / "single-1gpu-b64"), "--no-html", "--progress", "on"]) == 0
    assert "traces:" in capsys.readouterr().err            # tqdm bar on stderr
    assert main([str(sweep / "seed" / "single-1gpu-b64"), "--no-html"]) == 0   # auto: 1 trace, no bar
    assert "traces:" not in capsys.readouterr().err


@pytest.mark.parametrize("args", [("--format", "json", "--no-html"), ("--no-html",)])
def test_no_plotting_library_unless_the_html_is_drawn(sweep: Path, args: tuple[str, ...]) -> None:
    good = str(sweep / "seed" / "single-1gpu-b64")
    code = ("import sys; from analysis.report.cli import main; rc = main([%r, *%r]); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch', 'models')); "
            "print('LOADED', bad, file=sys.stderr); sys.exit(rc or (1 if bad else 0))") % (good, list(args))
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "LOADED []" in p.stderr
