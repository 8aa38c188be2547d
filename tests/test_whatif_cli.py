"""`python -m analysis.whatif` on built run folders: output, the self-check, the report section, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.report.html import report_page
from analysis.view.reportview import build_view
from analysis.api import Analysis
from analysis.view.summary import to_summary
from analysis.view.render import render_markdown, render_text
from analysis.whatif.cli import main
from conftest import REPO, cli_env
from profiler.contract import vocab
from profiler.contract.runjson import encode_json
from builders.kineto import cpu_phase_trace
from builders.runs import LAYERS, run_info


def write_cpu_run(root: Path, name: str, strategy: str, devices: int, batch: int, times: tuple[int, int, int]) -> Path:
    d = root / name
    info = run_info(name, strategy, devices, batch, device_type="cpu", images_per_s=10.0, parameter_bytes=44_000_000,
                    workers=0, cpus=2.0, layers=LAYERS, omp=None if devices == 1 else "1")
    d.mkdir(parents=True)
    (d / vocab.RUN_JSON).write_bytes(encode_json(info))
    for r in range(devices if strategy == vocab.DDP else 1):
        cpu_phase_trace(100 + r, *times).write(d / f"rank{r}.1700000000000.pt.trace.json.gz")
    return d


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    write_cpu_run(tmp_path, "single-1cpu-b64", "single", 1, 64, (100_000, 200_000, 200_000))
    write_cpu_run(tmp_path, "ddp-2cpu-b64", "ddp", 2, 64, (100_000, 200_000, 400_000))
    return tmp_path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analysis.whatif", *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120)


GOLDEN = """\
  - forward 100.0 ms: 100.0 ms measured in single-1cpu-b64 for 64 images, × 32/64 images; × 2.00 for 1 thread(s) per process vs 2 (assumed: linear in cores, no calibration in run.json)
  - backward 200.0 ms: 200.0 ms measured in single-1cpu-b64 for 64 images, × 32/64 images; × 2.00 for 1 thread(s) per process vs 2 (assumed: linear in cores, no calibration in run.json)
  - loss 0.0 ms: 0.0 ms measured in single-1cpu-b64 for 64 images, × 32/64 images; × 2.00 for 1 thread(s) per process vs 2 (assumed: linear in cores, no calibration in run.json)
  - optimizer 400.0 ms: 200.0 ms measured in single-1cpu-b64, not divided by N (every rank updates every parameter); × 2.00 for 1 thread(s) per process vs 2 (assumed: linear in cores, no calibration in run.json)
  - all-reduce (exposed) 44.0 ms: 44.0 ms in flight: ring 2(N−1)/N × 44.0 MB = 44.0 MB at 1 GB/s (assumed: no calibration in run.json); adds in full: 2 processes × 1 thread(s) fill the 2 cores, so gloo's own CPU work competes with backward and overlap buys little
  - host 0.0 ms: the rest of single-1cpu-b64's step outside the phases, 0.0 ms measured, kept per step
  - data 0.0 ms: workers=0: the training process loads: ss:data_wait 0.0 ms ÷ 64 images in single-1cpu-b64; × 64 images ÷ 2 core(s) (workers=0: the training process loads, in series with the step); 0.0 ms to load a batch; fetch 0.0 ms (ss:data_wait measured in single-1cpu-b64 × 32/64 images)
"""


def test_text_prediction_has_every_term_and_the_check(runs: Path, capsys) -> None:
    assert main([str(runs / "single-1cpu-b64"), str(runs / "ddp-2cpu-b64"), "--strategy", "ddp", "--devices", "2",
                 "--global-batch", "64"]) == 0
    out = capsys.readouterr().out
    for name in ("forward", "backward", "loss", "optimizer", "all-reduce (exposed)", "host", "data"):
        assert f"  - {name} " in out
    assert "What if vs measured:" in out and "ddp-2cpu-b64" in out
    basis = "\n".join(line for line in out.splitlines() if line.startswith("  - "))
    print(basis)
    assert basis == GOLDEN.rstrip("\n")


def test_json_output(runs: Path, capsys) -> None:
    assert main([str(runs), "--format", "json", "--gpu", "L40S"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["input_runs"] == ["single-1cpu-b64"]
    preds = {(p["strategy"], p["devices"]): p for p in doc["predictions"]}
    assert set(preds) == {("single", 1), ("dp", 2), ("dp-layerwise", 2), ("ddp", 2), ("dp", 4), ("dp-layerwise", 4),
                          ("ddp", 4)}
    assert all(p["analytic"] and p["gpu"] == "L40S" and p["basis"] for p in preds.values())
    assert preds[("ddp", 4)]["bytes_per_step"] == 2 * 44_000_000 * 3 // 4
    assert [c["run"] for c in doc["checks"]] == ["ddp-2cpu-b64"]       # a CPU run checked from the CPU run
    labels = [a["label"] for a in doc["advice"]]
    assert labels[0] == "most images per GPU-hour"
    assert any(line.startswith("condor_submit condor/profile.sub SWEEP=whatif ") for line in doc["advice"][0]["lines"])


def test_report_carries_the_what_if_section(runs: Path) -> None:
    report = Analysis([runs], progress=False).report
    view = build_view(report)
    table = view.table("What if vs measured")
    assert table is not None and [r[0] for r in table.rows] == ["ddp-2cpu-b64"]
    assert "What if vs measured" in render_text(view) and "## What if vs measured" in render_markdown(view)
    summary = to_summary(report, view)
    assert summary["whatif"]["checks"][0]["predicted_from"] == "single-1cpu-b64"
    assert summary["whatif"]["summary"]["configurations"] == 1
    assert "<h2>What if vs measured</h2>" in report_page(view)     # the HTML renders view.tables too


@pytest.mark.parametrize("extra,needle", [
    (["--devices", "0"], "device counts must be 1 or more"),
    (["--gpu", "GTX 9999"], "unknown GPU 'GTX 9999'"),
    (["--strategy", "dp"], "does not apply on a CPU"),
    (["--strategy", "single", "--devices", "2"], "no configuration to predict (single runs on 1 device"),
    (["--global-batch", "64", "--devices", "3"], "does not split evenly over 3 devices"),
])
def test_bad_options_give_one_line_and_exit_2(runs: Path, extra: list[str], needle: str) -> None:
    res = run_cli(str(runs / "single-1cpu-b64"), *extra)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


def test_bad_paths_give_one_line_and_exit_2(tmp_path: Path) -> None:
    res = run_cli(str(tmp_path / "nope"))
    assert res.returncode == 2 and "no such file or directory" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    bare = tmp_path / "single-1cpu-b64"
    bare.mkdir()
    (bare / vocab.RUN_JSON).write_bytes(encode_json(run_info("single-1cpu-b64", "single", 1, 64, device_type="cpu")))
    res = run_cli(str(bare))
    assert res.returncode == 2 and "no profiled steps" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_help_explains(runs: Path) -> None:
    res = run_cli("--help")
    assert res.returncode == 0 and "analytic" in res.stdout and "A100-SXM4-80GB" in res.stdout
