"""The runner's input errors: exit 2, one line on stderr, no traceback, no run folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY_ARGS, run_train

pytestmark = pytest.mark.slow   # spawns training processes


def _one_line_error(res: object) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA GPUs")
@pytest.mark.parametrize("strategy,n", [("dp", 2), ("dp-layerwise", 4)])
def test_dataparallel_without_gpus_exits_2_and_writes_nothing(tmp_path: Path, strategy: str, n: int) -> None:
    out = tmp_path / "traces"
    res = run_train(["--strategy", strategy, "--gpus", str(n), "--out", str(out)])
    line = _one_line_error(res)
    assert f"{strategy} needs {n} CUDA GPUs, found 0" in line
    assert f"python -m models.train --strategy ddp --device cpu --gpus {n}" in line
    assert not out.exists()


def test_cifar10_missing_dir_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "cifar"
    out = tmp_path / "traces"
    line = _one_line_error(run_train(["--data", "cifar10", "--data-dir", str(missing), "--out", str(out)]))
    assert str(missing) in line and "--download" in line
    assert not out.exists()


def test_non_empty_run_folder_needs_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "single-1cpu-b8"
    run.mkdir()
    (run / "run.json").write_text("{}")
    line = _one_line_error(run_train([*TINY_ARGS, "--out", str(tmp_path)]))
    assert "--overwrite" in line and str(run) in line
    assert (run / "run.json").read_text() == "{}"


def test_uneven_batch_split_is_refused(tmp_path: Path) -> None:
    line = _one_line_error(run_train(["--strategy", "ddp", "--device", "cpu", "--gpus", "2",
                                      "--batch-size", "7", "--out", str(tmp_path / "t")]))
    assert "--batch-size 7" in line


def test_help_explains_with_examples() -> None:
    res = run_train(["--help"])
    assert res.returncode == 0
    for text in ("--strategy", "dp-layerwise", "--profile-active", "examples:", "exit codes"):
        assert text in res.stdout
    assert "--no-calibrate skip the short thread-scaling and all-reduce calibration the what-if uses" \
        in " ".join(res.stdout.split())
