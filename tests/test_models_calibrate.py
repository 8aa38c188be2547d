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
    st = calibrate.alone_step(TINY, batch=4, threads=1, steps=2, workers=1, warmup=2)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert (st.processes, st.threads, st.batch, st.steps, st.workers, st.warmup) == (1, 1, 4, 2, 1, 2)
    assert st.forward_ms > 0 and st.backward_ms > 0 and st.optimizer_ms > 0


def test_the_steps_loader_workers_live_through_every_call_as_the_runs_do() -> None:
    """A loader that ran out after 4 batches took its worker with it from the 5th step on, and two
    full-width DDP ranks' Adam then took 1.1 s where the run's (worker alive) took 1.7-2.2 s."""
    import psutil

    from models.calibrate.workloads import train_step
    me = psutil.Process()
    before = {c.pid for c in me.children()}
    step = train_step(TINY, 4, False, False, 1e-3, torch.Generator().manual_seed(0), workers=1, calls=7)
    alive = []
    for _ in range(7):
        step()
        alive.append(sum(1 for c in me.children() if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE))
    assert alive == [1] * 7
    del step


@pytest.mark.parametrize("profiler, expected", [
    ({"enabled": True, "wait": 1, "warmup": 1, "active": 3, "repeat": 1}, (2, 3)),   # the runner's default schedule
    ({"enabled": True, "wait": 0, "warmup": 1, "active": 2, "repeat": 1}, (1, 2)),   # the demo's
    ({"enabled": True, "wait": 0, "warmup": 0, "active": 1, "repeat": 1}, (1, 1)),   # one untimed step at least
    ({"enabled": True, "wait": 10, "warmup": 5, "active": 50, "repeat": 0}, (3, 4)),  # capped: 7 steps at most
    ({"enabled": False, "wait": 1, "warmup": 1, "active": 3, "repeat": 1}, (1, 2)),  # --no-profile: every step counts
    (None, (1, 2)),
])
def test_the_step_calibration_times_the_steps_the_run_records(profiler: dict | None, expected: tuple[int, int]) -> None:
    assert calibrate.schedule_steps(profiler) == expected


def test_untimed_steps_are_run_before_the_timed_ones_are_averaged() -> None:
    calls = iter([(9.0, 9.0, 9.0), (5.0, 5.0, 5.0), (0.001, 0.002, 0.003), (0.003, 0.004, 0.005)])
    fwd, bwd, opt, wait = calibrate.mean_phases(lambda: next(calls), steps=2, profiled=False, warmup=2)
    assert (round(fwd, 6), round(bwd, 6), round(opt, 6), wait) == (2.0, 3.0, 4.0, 0.0)   # ms: the last two only


def test_a_rank_times_its_wait_for_the_slowest_after_each_timed_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step is followed by the barrier; the barrier after step i is step i's wait (a fake clock the
    barrier advances by 0.1 s, 0.2 s, ...: the warm-up's and the first barrier are not counted)."""
    clock = {"now": 0.0, "calls": 0}

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock["now"]

    def agree(go: bool) -> bool:
        clock["calls"] += 1
        clock["now"] += 0.1 * clock["calls"]
        return go
    from models.calibrate import timing
    monkeypatch.setattr(timing, "time", FakeTime)
    fwd, bwd, opt, wait = calibrate.mean_phases(lambda: (0.0, 0.0, 0.0), steps=2, agree=agree, profiled=False,
                                                warmup=1)
    # 4 barriers: before the warm-up (0.1 s), before step 1 (0.2 s: the warm-up's wait), after step 1 (0.3 s),
    # after step 2 (0.4 s): (0.3 + 0.4) / 2 = 350 ms
    assert clock["calls"] == 4 and wait == pytest.approx(350.0) and fwd == 0.0


def test_the_ranks_figures_are_their_mean_and_the_rate_rank_zeros() -> None:
    from profiler.contract.runjson import AllReduceRate, StepTimes
    def rank(r: int, fwd: float, wait: float | None) -> calibrate.Concurrent:
        return calibrate.Concurrent(rank=r, step=StepTimes(processes=2, threads=1, batch=4, steps=3, forward_ms=fwd,
                                                           backward_ms=2 * fwd, optimizer_ms=3 * fwd, wait_ms=wait),
                                    allreduce=AllReduceRate(backend="gloo", processes=2, bytes=8, ms=1.0 + r))
    both = calibrate.over_ranks([rank(0, 100.0, 0.0), rank(1, 300.0, 120.0)])
    s = both.step
    assert (s.forward_ms, s.backward_ms, s.optimizer_ms, s.wait_ms) == (200.0, 400.0, 600.0, 60.0)
    assert both.allreduce.ms == 1.0 and (s.processes, s.steps) == (2, 3)


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
    assert (ranks.processes, ranks.threads, ranks.batch, ranks.steps, ranks.warmup) == (2, per_rank, 4, calibrate.STEPS,
                                                                                       calibrate.WARMUP)
    assert ranks.wait_ms is not None and ranks.wait_ms >= 0.0
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
    res = run_train([*TINY_ARGS, "--max-steps", "3", "--profile-wait", "1", "--profile-warmup", "1",
                     "--profile-active", "1", "--out", str(tmp_path)])
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
    # the steps the run's profiler records: it skips 2 (wait 1 + warmup 1) and records 1
    assert (cal.alone_step.warmup, cal.alone_step.steps) == (cal.ddp_step.warmup, cal.ddp_step.steps) == (2, 1)
    assert "steps timed 3-3 after 2 untimed" in cal.notes[-1]
    assert info.status == vocab.STATUS_COMPLETE


@pytest.mark.slow
def test_no_calibrate_leaves_run_json_calibration_null(tmp_path: Path) -> None:
    res = run_train([*TINY_ARGS, "--max-steps", "1", "--no-profile", "--no-calibrate", "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-2000:]
    raw = json.loads((tmp_path / "single-1cpu-b8" / vocab.RUN_JSON).read_text())
    assert raw["calibration"] is None and raw["status"] == vocab.STATUS_COMPLETE
