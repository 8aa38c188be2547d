"""The sampler on a real (GPU-less) machine: host + process rows, NVML fallback, failures contained."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from profiler import metrics
from profiler.contract import vocab
from profiler.contract.samples import read_samples
from profiler.sampler import Sampler, SamplerConfig
from profiler.sampler_engine import descendants

REPO = Path(__file__).resolve().parent.parent


def wait_for(cond: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll until ``cond`` holds (liveness, not timing: the limit is generous)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def has(path: Path, source: str, device: str, metric: str) -> bool:
    return path.exists() and f",{source},{device},{metric}," in path.read_text()


def nvml_missing() -> bool:
    try:
        import pynvml
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return False
    except Exception:
        return True


def test_isolated_sampler_writes_host_and_proc_rows(tmp_path: Path) -> None:
    path = tmp_path / vocab.SAMPLES_CSV
    s = Sampler(SamplerConfig(csv_path=str(path), period_s=0.02, n_gpus=0))
    with s:
        assert s.in_child
        assert wait_for(lambda: has(path, "proc", "children", vocab.NUM_PROCS))
    got = rows(path)
    assert tuple(got[0]) == vocab.SAMPLES_HEADER
    assert s.rows_written == len(got) > 0
    keys = {(r["source"], r["device"], r["metric"]) for r in got}
    assert {("host", "all", vocab.CPU_PCT), ("host", "cpu0", vocab.CPU_PCT), ("host", "all", vocab.MEM_USED),
            ("proc", "main", vocab.CPU_PCT), ("proc", "main", vocab.RSS),
            ("proc", "children", vocab.NUM_PROCS), ("proc", "tree", vocab.CPU_CORES)} <= keys
    assert all(0 <= float(r["value"]) <= 100 for r in got if r["source"] == "host" and r["metric"] == "cpu_pct")
    main_rss = [float(r["value"]) for r in got if r["device"] == "main" and r["metric"] == vocab.RSS]
    assert min(main_rss) > 1   # this pytest process, in MiB
    # time_ns is wall-clock time (the clock Kineto's baseTimeNanoseconds uses)
    assert abs(int(got[-1]["time_ns"]) - time.time_ns()) < 600 * 10**9
    assert not s.in_child


@pytest.mark.skipif(not nvml_missing(), reason="this machine has NVML; the fallback is for machines without")
def test_without_nvml_it_says_so_and_host_sampling_goes_on(tmp_path: Path) -> None:
    path = tmp_path / vocab.SAMPLES_CSV
    with Sampler(SamplerConfig(csv_path=str(path), period_s=0.02, gpu_uuids=("GPU-1234", "GPU-5678"))) as s:
        assert wait_for(lambda: has(path, "host", "all", vocab.CPU_PCT))
    assert s.nvml_status.startswith("NVML unavailable: ")
    assert s.gpu_inventory() == [] and s.driver is None
    assert "nvml," not in path.read_text()


def test_a_failing_metric_is_noted_once_and_the_rest_keeps_sampling(tmp_path: Path) -> None:
    calls = {"n": 0}

    def explode(probe: metrics.HostProbe) -> list[tuple[str, float]]:
        calls["n"] += 1
        raise RuntimeError(f"sensor fell off (call {calls['n']})")

    def proc_explode(procs: object) -> float:
        raise OSError("no /proc today")

    path = tmp_path / vocab.SAMPLES_CSV
    s = Sampler(SamplerConfig(csv_path=str(path), period_s=0.01),
                host_metrics=(metrics.HostMetric("broken_metric", "?", explode), *metrics.HOST_METRICS),
                proc_metrics=(*metrics.PROC_METRICS, metrics.ProcMetric("broken_proc", "?", proc_explode)))
    assert not s.isolate       # custom tables run in-process
    with s:
        assert wait_for(lambda: calls["n"] >= 5)
    assert [n for n in s.notes if "broken_metric" in n] == ["host broken_metric failed: RuntimeError: "
                                                             "sensor fell off (call 1)"]
    assert sum("broken_proc" in n for n in s.notes) == 2      # once per process group
    text = path.read_text()
    assert "broken" not in text
    assert text.count(f",host,all,{vocab.CPU_PCT},") >= 5      # sampling went on after every failure


def test_children_rows_sum_the_descendants_of_the_root(tmp_path: Path) -> None:
    # a launcher whose child burns CPU, like a DDP launcher and its rank
    script = textwrap.dedent("""
        import subprocess, sys, time
        busy = "import time\\nend = time.time() + 60\\nwhile time.time() < end: pass"
        g = subprocess.Popen([sys.executable, "-c", busy])
        print(g.pid, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        assert {child.pid, grandchild} <= set(descendants(os.getpid()))
        path = tmp_path / vocab.SAMPLES_CSV
        with Sampler(SamplerConfig(csv_path=str(path), period_s=0.05, root_pid=child.pid)) as s:
            assert s.in_child
            assert wait_for(lambda: any(r["metric"] == vocab.NUM_PROCS and r["value"] == "1"
                                        and float(_cpu_after(path, r["time_ns"])) > 0 for r in rows(path)))
            # the tree (launcher + its busy child) in cores: the child's core shows up
            assert wait_for(lambda: bool(_tree_cores(path)) and max(_tree_cores(path)) > 0.5)
        assert max(_tree_cores(path)) <= len(os.sched_getaffinity(0)) * 1.3
    finally:
        for p in psutil.Process(child.pid).children(recursive=True) + [psutil.Process(child.pid)]:
            p.kill()
        child.wait()


def _tree_cores(path: Path) -> list[float]:
    return [s.value for s in read_samples(path)
            if (s.source, s.device, s.metric) == (vocab.SOURCE_PROC, vocab.PROC_TREE, vocab.CPU_CORES)]


def test_the_config_crosses_to_the_sampler_process_whole(tmp_path: Path) -> None:
    import msgspec
    cfg = SamplerConfig(csv_path=str(tmp_path / "s.csv"), period_s=0.25, gpu_uuids=("GPU-a", "MIG-b"),
                        per_core=False)
    assert msgspec.json.decode(msgspec.json.encode(cfg), type=SamplerConfig) == cfg
    assert cfg.root_pid == os.getpid() and cfg.gpus == 2
    with pytest.raises(ValueError, match="positive"):
        SamplerConfig(csv_path="x", period_s=0)


def _cpu_after(path: Path, time_ns: str) -> str:
    """children cpu_pct at the given tick ("0" if absent)."""
    for r in rows(path):
        if r["time_ns"] == time_ns and r["device"] == "children" and r["metric"] == vocab.CPU_PCT:
            return r["value"]
    return "0"


def test_appending_keeps_one_header(tmp_path: Path) -> None:
    path = tmp_path / vocab.SAMPLES_CSV
    for _ in range(2):
        with Sampler(SamplerConfig(csv_path=str(path), period_s=0.02), isolate=False):
            assert wait_for(lambda: has(path, "host", "all", vocab.CPU_PCT))
    assert path.read_text().count("time_ns,source") == 1


def test_sampler_process_ignores_ctrl_c_and_exits_when_the_run_dies(tmp_path: Path) -> None:
    path = tmp_path / vocab.SAMPLES_CSV
    script = textwrap.dedent(f"""
        import sys, os
        sys.path.insert(0, {str(REPO)!r})
        from profiler.sampler import Sampler, SamplerConfig
        s = Sampler(SamplerConfig(csv_path={str(path)!r}, period_s=0.02)).start()
        print(s._child.pid, flush=True)
        sys.stdin.readline()
        os._exit(0)          # dies without stop(), as a SIGKILLed run would
    """)
    run = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    assert run.stdout is not None and run.stdin is not None
    sampler_pid = int(run.stdout.readline())
    assert wait_for(lambda: has(path, "host", "all", vocab.CPU_PCT))
    os.kill(sampler_pid, signal.SIGINT)
    n = path.read_text().count("\n")
    assert wait_for(lambda: path.read_text().count("\n") > n + 20)   # still sampling after Ctrl-C
    # run in a fresh process with no other children: the sampler's own process is not counted
    assert {r["value"] for r in rows(path) if r["metric"] == vocab.NUM_PROCS} == {"0"}
    run.stdin.write("bye\n")
    run.stdin.flush()
    run.wait(timeout=20)
    assert wait_for(lambda: not psutil.pid_exists(sampler_pid)
                    or psutil.Process(sampler_pid).status() == psutil.STATUS_ZOMBIE)


def test_when_the_sampler_process_cannot_start_it_samples_in_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    path = tmp_path / vocab.SAMPLES_CSV
    with Sampler(SamplerConfig(csv_path=str(path), period_s=0.02)) as s:
        assert not s.in_child
        assert wait_for(lambda: has(path, "host", "all", vocab.CPU_PCT))
    assert any(n.startswith("sampler subprocess failed") and "sampling in-process" in n for n in s.notes)
    assert s.rows_written > 0


def test_stop_is_prompt_even_when_a_forked_worker_holds_the_pipe(tmp_path: Path) -> None:
    """DataLoader workers are forked: they inherit the pipe to the sampler process."""
    path = tmp_path / vocab.SAMPLES_CSV
    s = Sampler(SamplerConfig(csv_path=str(path), period_s=0.02)).start()
    pid = os.fork()
    if pid == 0:                      # the "worker": holds every inherited fd, does nothing
        time.sleep(30)
        os._exit(0)
    try:
        assert wait_for(lambda: has(path, "host", "all", vocab.CPU_PCT))
        s.stop()
        assert not [n for n in s.notes if "did not stop" in n], s.notes
        assert s.rows_written == len(rows(path)) > 0
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
