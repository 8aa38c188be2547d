"""The profiling session on CPU with a tiny model: real Kineto traces, phase labels, early exit."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import event_names, run_traces
from profiler.contract import vocab
from profiler.session import NullProfiler, Schedule, all_threads_config, devices_to_sync, make_profiler, phase


def tiny_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    with phase(vocab.DATA_WAIT):
        x, y = torch.randn(4, 8), torch.randint(0, 2, (4,))
    with phase(vocab.FORWARD):
        out = model(x)
    with phase(vocab.LOSS):
        loss = torch.nn.functional.cross_entropy(out, y)
    with phase(vocab.BACKWARD):
        loss.backward()
    with phase(vocab.OPTIMIZER):
        opt.step()
        opt.zero_grad()


def model_and_opt() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_three_active_steps_write_a_gzipped_trace_with_steps_and_phases(tmp_path: Path) -> None:
    model, opt = model_and_opt()
    with make_profiler(tmp_path, "rank0", Schedule(wait=1, warmup=1, active=3), cuda=False) as prof:
        for _ in range(5):
            tiny_step(model, opt)
            prof.step()
    [trace] = run_traces(tmp_path)
    assert trace.name.startswith("rank0.")
    names = event_names(trace)
    steps = sorted({n for n in names if n.startswith(vocab.TORCH_PROFILER_STEP)})
    assert steps == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]   # wait 0, warmup 1, active 2-4
    assert set(vocab.TRAIN_STEP_PHASES) - {vocab.H2D} <= set(names)
    assert names.count(vocab.FORWARD) == 3


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_leaving_early_during_the_active_window_still_writes_the_trace(
        tmp_path: Path, exc: type[BaseException]) -> None:
    model, opt = model_and_opt()
    with pytest.raises(exc):
        with make_profiler(tmp_path, "rank0", Schedule(wait=1, warmup=1, active=3), cuda=False) as prof:
            for step in range(5):
                tiny_step(model, opt)
                if step == 3:            # second active step, mid-window
                    raise exc("stop here")
                prof.step()
    [trace] = run_traces(tmp_path)
    names = event_names(trace)
    assert {"ProfilerStep#2", "ProfilerStep#3"} <= set(names)
    assert "ProfilerStep#4" not in names
    assert names.count(vocab.FORWARD) == 2


def test_leaving_during_warmup_writes_nothing(tmp_path: Path) -> None:
    model, opt = model_and_opt()
    with make_profiler(tmp_path, "rank0", Schedule(wait=1, warmup=2, active=1), cuda=False) as prof:
        for _ in range(2):
            tiny_step(model, opt)
            prof.step()
    assert run_traces(tmp_path) == []


def test_all_threads_records_work_on_threads_the_step_starts(tmp_path: Path) -> None:
    """DataParallel runs replicas on threads it starts each forward; they must be in the trace."""
    config, why_not = all_threads_config()
    if config is None:
        pytest.skip(why_not or "no profile_all_threads")

    def replica() -> None:
        with phase(vocab.PARALLEL_APPLY):
            torch.mm(torch.randn(32, 32), torch.randn(32, 32))

    notes: list[str] = []
    with make_profiler(tmp_path, "rank0", Schedule(wait=0, warmup=1, active=1), cuda=False,
                       notes=notes) as prof:
        for _ in range(2):
            t = threading.Thread(target=replica)
            t.start()
            t.join()
            prof.step()
    assert notes == []
    [trace] = run_traces(tmp_path)
    assert vocab.PARALLEL_APPLY in event_names(trace)

    # and the option is what makes the difference: without it the replica's span is lost
    main_only = tmp_path / "main_only"
    with make_profiler(main_only, "rank0", Schedule(wait=0, warmup=1, active=1), cuda=False,
                       all_threads=False) as prof:
        for _ in range(2):
            t = threading.Thread(target=replica)
            t.start()
            t.join()
            prof.step()
    [trace] = run_traces(main_only)
    assert vocab.PARALLEL_APPLY not in event_names(trace)


def test_disabled_is_a_no_op_with_the_same_interface(tmp_path: Path) -> None:
    prof = make_profiler(tmp_path, "rank0", Schedule(), cuda=False, enabled=False)
    assert isinstance(prof, NullProfiler)
    with prof as p:
        p.step()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"active": 0}, {"wait": -1}, {"repeat": 1.5}])
def test_bad_schedule_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="profiler"):
        Schedule(**kwargs)


def test_steps_needed() -> None:
    assert Schedule(wait=1, warmup=1, active=3, repeat=2).steps_needed == 10


def test_torch_free_modules_do_not_import_torch() -> None:
    import subprocess
    import sys
    code = ("import sys, profiler, profiler.contract, profiler.clock, profiler.metrics, profiler.nvml, "
            "profiler.sampler_engine, profiler.sampler, profiler.runinfo, profiler.scalars, profiler.cpualloc, "
            "profiler.classad, models.nativelog; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"


def test_devices_to_sync_is_every_distinct_dp_device_else_the_own_one() -> None:
    assert devices_to_sync(torch.device("cuda", 0), (0, 1, 2, 3)) == [0, 1, 2, 3]
    assert devices_to_sync(torch.device("cuda", 0), (0, 0)) == [0]         # --device-ids 0,0
    assert devices_to_sync(torch.device("cuda", 2)) == [2]                  # a DDP rank
    assert devices_to_sync(torch.device("cpu"), (0, 1)) == []
