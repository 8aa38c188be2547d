"""The sweep's presets, device skipping and the exact train commands it would run."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO, cli_env
from models.sweep import DEMO, preset_configs, resolve


def test_seed_preset_is_the_chtc_example() -> None:
    got = [(c.strategy, c.devices, c.global_batch, c.workers) for c in preset_configs("seed", 16)]
    assert got == [("single", 1, 64, 4), ("dp", 2, 128, 4), ("dp-layerwise", 4, 256, 4)]


def test_fixed_preset_is_ddp_64_per_gpu_pinned() -> None:
    cfgs = preset_configs("fixed", 16)
    assert [(c.strategy, c.devices, c.global_batch, c.pin_memory) for c in cfgs] == \
        [("ddp", 1, 64, True), ("ddp", 2, 128, True), ("ddp", 4, 256, True)]
    assert all(c.workers >= 2 for c in cfgs)


def test_auto_picks_cpu_without_gpus_and_everything_with() -> None:
    group, cfgs = resolve("auto", 0, 2)
    assert group == "cpu" and [c.label for c in cfgs] == ["single-1cpu-b64", "ddp-2cpu-b64"]
    group, cfgs = resolve("auto", 4, 16)
    assert group == "gpu" and len(cfgs) == 6 and all(c.device == "cuda" for c in cfgs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks skipping on a machine without GPUs")
def test_gpu_configs_are_skipped_with_a_line_on_cpu(tmp_path) -> None:
    res = subprocess.run([sys.executable, "-m", "models.sweep", "--preset", "seed", "--out", str(tmp_path)],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for label, n in (("single-1gpu-b64", 1), ("dp-2gpu-b128", 2), ("dp-layerwise-4gpu-b256", 4)):
        assert f"[sweep] {label}: skipped: needs {n} CUDA GPUs, found 0" in res.stdout
    assert not any(tmp_path.iterdir())


def test_demo_dry_run_prints_the_train_commands(tmp_path) -> None:
    res = subprocess.run([sys.executable, "-m", "models.sweep", "--preset", "cpu", "--demo", "--dry-run",
                          "--out", str(tmp_path)], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    cmds = [ln for ln in res.stdout.splitlines() if ln.startswith("[sweep] python -m models.train")]
    assert len(cmds) == 2
    for cmd in cmds:
        assert f"--max-steps {DEMO['max_steps']}" in cmd and f"--out {tmp_path / 'cpu'}" in cmd
        assert "--overwrite" in cmd and cmd.count("--workers") == 1
    assert "--strategy ddp --device cpu --gpus 2 --batch-size 64" in cmds[1]
