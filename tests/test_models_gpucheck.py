"""scripts/check_runs.py (the GPU check's verdict) on real CPU runs, and DP labels on a real GPU."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, cli_env, event_names, run_traces
from profiler.contract import vocab

sys.path.insert(0, str(REPO / "scripts"))
import check_runs  # noqa: E402


def test_cpu_runs_pass_the_check(tiny_runs: Path) -> None:
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "check_runs.py"),
                          *map(str, sorted(tiny_runs.iterdir()))], capture_output=True, text=True,
                         env=cli_env(), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "single-1cpu-b8" in res.stdout and "ddp-2cpu-b8" in res.stdout
    ddp = check_runs.scan(tiny_runs / "ddp-2cpu-b8")
    assert ddp.traces == 2 and ddp.collectives["gloo"] > 0 and ddp.host_rows > 0


def test_a_run_claiming_cuda_without_kernels_fails(tiny_runs: Path, tmp_path: Path) -> None:
    run = tmp_path / "dp-2gpu-b16"
    shutil.copytree(tiny_runs / "single-1cpu-b8", run)
    info = json.loads((run / vocab.RUN_JSON).read_text())
    info["config"].update(strategy="dp", device_type="cuda", devices=2)
    (run / vocab.RUN_JSON).write_text(json.dumps(info))
    rc = check_runs.scan(run)
    text = "; ".join(rc.failures)
    for missing in ("no CUDA kernels", "no Memcpy events", "no NVML rows", vocab.SCATTER, vocab.GATHER):
        assert missing in text
    assert check_runs.main([str(run)]) == 1


def _dp_trace_names(device_ids: list[int], out: Path) -> list[str]:
    from models.convnet import ConvNet
    from models.strategies import LabelledDataParallel
    from profiler.session import Schedule, make_profiler

    model = LabelledDataParallel(ConvNet(width=0.0625).cuda(device_ids[0]), device_ids=device_ids)
    x = torch.randn(8, 3, 32, 32, device=f"cuda:{device_ids[0]}")
    with make_profiler(out, "rank0", Schedule(wait=0, warmup=1, active=1), cuda=True) as prof:
        for _ in range(2):
            model(x).sum().backward()
            prof.step()
    return event_names(run_traces(out)[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
def test_labelled_data_parallel_records_its_four_phases_on_cuda(tmp_path: Path) -> None:
    ids = [0, 1] if torch.cuda.device_count() >= 2 else [0, 0]
    names = _dp_trace_names(ids, tmp_path)
    for label in vocab.DP_PHASES:
        assert label in names, label
