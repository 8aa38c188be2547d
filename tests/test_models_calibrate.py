"""The CPU calibration a run records for the what-if: real measurements on a tiny model, no mocks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_ARGS, run_train
from models import calibrate
from profiler.contract import vocab
from profiler.contract.runjson import read_run_json

TINY = 0.0625


@pytest.mark.parametrize("cpus, counts", [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (8, [1, 2, 4, 8]),
                                          (12, [1, 2, 4, 8, 12]), (1000, [1, 2, 4, 8, 16, 32, 64, 1000])])
def test_thread_counts_double_up_to_the_allocation(cpus: int, counts: list[int]) -> None:
    assert calibrate.thread_counts(cpus) == counts
    assert len(calibrate.thread_counts(cpus)) <= calibrate.MAX_COUNTS


def test_thread_scaling_in_process_gives_one_figure_per_thread_count() -> None:
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    ts = calibrate.thread_scaling(TINY, batch=4, cpus=2)
    # the run seeds and threads itself afterwards: calibration leaves both as they were
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)
    assert ts.threads == [1, 2]
    assert len(ts.compute_ms) == len(ts.memory_ms) == 2
    assert all(v > 0 for v in (*ts.compute_ms, *ts.memory_ms))
    params = sum(p.numel() for p in calibrate.ConvNet(width=TINY).parameters())
    assert (ts.batch, ts.elements) == (4, min(params, calibrate.MAX_ELEMENTS))


def test_the_step_alone_times_each_phase_at_the_given_threads() -> None:
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    st = calibrate.alone_step(TINY, batch=4, threads=1, steps=2, workers=1)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert (st.processes, st.threads, st.batch, st.steps, st.workers) == (1, 1, 4, 2, 1)
    assert st.forward_ms > 0 and st.backward_ms > 0 and st.optimizer_ms > 0


@pytest.mark.parametrize("per_device, expected", [(64, 32), (8, 4), (1, 1), (3, 1)])
def test_the_steps_run_on_the_per_device_batch_split_over_two_ranks(per_device: int, expected: int) -> None:
    assert calibrate.step_batch(per_device) == expected


@pytest.mark.slow   # spawns two gloo workers
def test_calibrate_adds_two_ddp_ranks_and_a_64mib_gloo_all_reduce() -> None:
    cal = calibrate.calibrate(TINY, batch=8, train_batch=4, threads=2)
    ar, ts, alone, ranks = cal.allreduce, cal.thread_scaling, cal.alone_step, cal.ddp_step
    assert ar is not None and ts is not None and alone is not None and ranks is not None, cal.notes
    assert (ar.backend, ar.processes, ar.bytes) == ("gloo", 2, 64 * 2**20)
    per_rank = max(1, calibrate.allocation_cpus() // 2)
    assert ar.ms > 0 and ar.threads == per_rank
    assert ts.threads[0] == 1 and ts.threads == sorted(ts.threads) and ts.threads[-1] == calibrate.allocation_cpus()
    assert (alone.processes, alone.threads, alone.batch) == (1, 2, 4)
    assert (ranks.processes, ranks.threads, ranks.batch, ranks.steps) == (2, per_rank, 4, calibrate.STEPS)
    assert min(ranks.forward_ms, ranks.backward_ms, ranks.optimizer_ms) > 0
    assert any(n.startswith("calibration took") for n in cal.notes)


@pytest.mark.slow
def test_a_worker_timeout_is_an_error_the_runner_turns_into_a_note() -> None:
    with pytest.raises(calibrate.CalibrationError, match="timed out"):
        calibrate.concurrent(TINY, batch=2, timeout_s=0.2)


def test_gpu_runs_say_why_they_are_not_calibrated_and_the_flag_skips_it() -> None:
    cal = calibrate.calibration_for("cuda", TINY, 64)
    assert cal is not None and cal.thread_scaling is None and cal.allreduce is None
    assert "CPU runs only" in cal.notes[0]
    assert calibrate.calibration_for("cpu", TINY, 64, enabled=False) is None
    ddp = calibrate.calibration_for("cpu", TINY, 32, processes=2)
    assert ddp is not None and ddp.alone_step is None and "2 processes" in ddp.notes[0]


@pytest.mark.slow   # real training runs through the CLI
def test_a_cpu_run_records_its_calibration_in_run_json(tmp_path: Path) -> None:
    res = run_train([*TINY_ARGS, "--max-steps", "1", "--no-profile", "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-2000:]
    info, _ = read_run_json(tmp_path / "single-1cpu-b8" / vocab.RUN_JSON)
    cal = info.calibration
    assert cal is not None and cal.thread_scaling is not None and cal.allreduce is not None, cal
    ts = cal.thread_scaling
    assert ts.threads[0] == 1 and len(ts.compute_ms) == len(ts.memory_ms) == len(ts.threads)
    assert ts.batch == 8 and ts.elements == info.model.parameters      # the run's own model, all of it
    assert cal.allreduce.bytes == calibrate.ALLREDUCE_BYTES
    # the step on the run's 8 images split over two ranks, alone at the run's threads and as 2 DDP ranks
    assert cal.alone_step.batch == cal.ddp_step.batch == 4 and cal.ddp_step.processes == 2
    assert cal.alone_step.workers == cal.ddp_step.workers == 1            # the run's DataLoader workers beside it
    assert info.status == vocab.STATUS_COMPLETE


@pytest.mark.slow
def test_no_calibrate_leaves_run_json_calibration_null(tmp_path: Path) -> None:
    res = run_train([*TINY_ARGS, "--max-steps", "1", "--no-profile", "--no-calibrate", "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-2000:]
    raw = json.loads((tmp_path / "single-1cpu-b8" / vocab.RUN_JSON).read_text())
    assert raw["calibration"] is None and raw["status"] == vocab.STATUS_COMPLETE
