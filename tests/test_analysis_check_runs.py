"""scripts/check_runs.py on run folders built from the committed real traces: it counts what the breakdown counts."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.step.breakdown import analyse_trace
from conftest import REPO, cli_env
from profiler.contract import vocab
from profiler.contract.runjson import ConfigInfo, RunInfo, write_json_atomic

sys.path.insert(0, str(REPO / "scripts"))
import check_runs  # noqa: E402

DATA = Path(__file__).parent / "data"
ALEXNET = DATA / "hta" / "benchmark_result_2869224_1695835535_trace.json.gz"
MI250 = DATA / "hta" / "mi250_minitoy_train_ROCm6_2_kineto.json.gz"


def make_run(root: Path, name: str, traces: list[Path], strategy: str, device_type: str, devices: int,
             sources: tuple[str, ...], status: str = vocab.STATUS_COMPLETE) -> Path:
    """A run folder as the runner writes it: the traces, run.json, and samples.csv rows from `sources`."""
    run = root / name
    run.mkdir(parents=True)
    for i, t in enumerate(traces):
        shutil.copy(t, run / f"rank{i}.1700000000000.pt.trace.json.gz")
    write_json_atomic(run / vocab.RUN_JSON, RunInfo(name=name, status=status, config=ConfigInfo(
        strategy=strategy, device_type=device_type, devices=devices)))
    rows = [",".join(vocab.SAMPLES_HEADER)]
    rows += [f"{1_700_000_000_000_000_000 + i},{src},0,{vocab.CPU_PCT},50" for i, src in enumerate(sources)]
    (run / vocab.SAMPLES_CSV).write_text("\n".join(rows) + "\n")
    return run


def test_a_complete_cpu_run_passes(tmp_path: Path) -> None:
    run = make_run(tmp_path, "single-1cpu-b4", [DATA / "cpu_single_tiny.pt.trace.json.gz"], vocab.SINGLE, "cpu", 1,
                   (vocab.SOURCE_HOST, vocab.SOURCE_HOST))
    rc = check_runs.scan(run)
    assert rc.failures == []
    assert (rc.traces, rc.steps, rc.kernels, rc.host_rows, rc.nvml_rows) == (1, 2, 0, 2, 0)
    assert set(vocab.TRAIN_STEP_PHASES) <= rc.labels


def test_ddp_gloo_run_has_its_collective_and_misses_the_labels_its_traces_lack(tmp_path: Path) -> None:
    traces = [DATA / f"ddp_gloo_rank{r}_tiny.pt.trace.json.gz" for r in (0, 1)]
    rc = check_runs.scan(make_run(tmp_path, "ddp-2cpu-b16", traces, vocab.DDP, "cpu", 2, (vocab.SOURCE_HOST,)))
    assert rc.traces == 2 and rc.steps == 4 and rc.collectives["gloo"] > 0
    assert rc.failures == [f"missing labels {vocab.DATA_WAIT},{vocab.H2D}"]    # the tiny DDP script labels 4 phases


@pytest.mark.parametrize("trace,steps", [(ALEXNET, 0), (MI250, 2)])
def test_cuda_runs_count_kernels_and_copies_as_the_breakdown_does(tmp_path: Path, trace: Path, steps: int) -> None:
    rc = check_runs.scan(make_run(tmp_path, "single-1gpu-b64", [trace], vocab.SINGLE, "cuda", 1, (vocab.SOURCE_NVML,)))
    a = analyse_trace(trace)
    (gpu,) = a.devices
    assert rc.kernels == gpu.kernel_count and rc.gpus_with_kernels == 1
    assert dict(rc.memcpy) == {m.kind: m.count for m in a.memcpy}
    assert rc.steps == steps and rc.nvml_rows == 1
    missing_steps = ["no ProfilerStep events"] if steps == 0 else []
    assert rc.failures == missing_steps + ["missing labels " + ",".join(vocab.TRAIN_STEP_PHASES)]


def test_a_run_claiming_cuda_without_gpu_events_fails_on_each_missing_part(tmp_path: Path) -> None:
    run = make_run(tmp_path, "dp-2gpu-b8", [DATA / "cpu_single_tiny.pt.trace.json.gz"], vocab.DP, "cuda", 2,
                   (vocab.SOURCE_HOST,), status=vocab.STATUS_INTERRUPTED)
    text = "; ".join(check_runs.scan(run).failures)
    for missing in ("status interrupted", "no CUDA kernels", "no Memcpy events", "no NVML rows", vocab.SCATTER,
                    vocab.GATHER):
        assert missing in text


def test_unreadable_trace_and_samples_are_failures_not_crashes(tmp_path: Path) -> None:
    run = make_run(tmp_path, "single-1cpu-b4", [DATA / "cpu_single_tiny.pt.trace.json.gz"], vocab.SINGLE, "cpu", 1,
                   (vocab.SOURCE_HOST,))
    (run / "rank1.1.pt.trace.json.gz").write_bytes(b"\x1f\x8b broken")
    (run / vocab.SAMPLES_CSV).write_text("a,b\n1,2\n")
    text = "; ".join(check_runs.scan(run).failures)
    assert "rank1.1.pt.trace.json.gz unreadable: corrupt or truncated gzip" in text
    assert "samples.csv unreadable" in text and "2 traces, expected 1" in text


def test_cli_exit_codes_and_table(tmp_path: Path) -> None:
    good = make_run(tmp_path, "single-1cpu-b4", [DATA / "cpu_single_tiny.pt.trace.json.gz"], vocab.SINGLE, "cpu", 1,
                    (vocab.SOURCE_HOST,))
    bad = make_run(tmp_path, "single-1gpu-b64", [ALEXNET], vocab.SINGLE, "cuda", 1, (vocab.SOURCE_NVML,))

    def cli(*args: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO / "scripts" / "check_runs.py"), *map(str, args)],
                              capture_output=True, text=True, env=cli_env(), timeout=120)

    ok = cli(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    row = next(line for line in ok.stdout.splitlines() if line.startswith("single-1cpu-b4"))
    assert row.split()[1:4] == [vocab.STATUS_COMPLETE, "1", "2"] and row.endswith("ok")
    both = cli(good, bad)
    assert both.returncode == 1 and "FAIL: no ProfilerStep events" in both.stdout
    none = cli(tmp_path / "nowhere")
    assert none.returncode == 2 and "no run folder" in none.stderr
