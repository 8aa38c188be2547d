"""profiler.attach on the scripts people actually run: ranks from mp.spawn / start_processes /
multiprocessing.Process, a shell wrapper, the user's own `models` and `profiler`, `--steps` /
`--duration`, signals to the whole group, nothing left behind, bad input. Real processes throughout."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from analysis.api import Analysis
from conftest import run_traces, small_disk, step_names
from profiler.attach import cli
from profiler.attach.report import AttachSettings, ProcessReport, all_stopped, untrained_traces
from profiler.contract.runjson import read_run_json

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "attach_scripts"
PY = sys.executable
_PORT = [29600]


def _env(tmp: Path, extra: dict[str, str] | None = None, repo_on_path: bool = True) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp), **(extra or {}))
    if repo_on_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    return env


def attach(tmp: Path, *command: str, opts: tuple[str, ...] = (), env: dict[str, str] | None = None,
           timeout: float = 240, entry: tuple[str, ...] = ("-m", "profiler.attach"), repo_on_path: bool = True,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, *entry, "--out", str(tmp / "traces"), *opts, "--", *command], capture_output=True,
                          text=True, timeout=timeout, env=_env(tmp, env, repo_on_path), cwd=cwd or tmp)


def spawn_script(*args: str) -> list[str]:
    _PORT[0] += 1                 # a fresh rendezvous port per run: a test never meets a previous run's ranks
    return [PY, str(SCRIPTS / "ddp_spawn.py"), "--port", str(_PORT[0]), *args]


def no_state_left(tmp: Path) -> bool:
    return not list(tmp.glob("scalescope-attach-*"))


def group_of(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (the command's group and what it started)."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


# --- pure parts: which processes' traces are the run, when every rank is done ------------------
def test_a_launchers_trace_is_dropped_only_when_some_process_trained() -> None:
    launcher = ProcessReport(pid=1, traces=["rank0.1.pt.trace.json.gz"])
    rank = ProcessReport(pid=2, optimizer_steps=5, traces=["rank0.2.pt.trace.json.gz"])
    assert untrained_traces([launcher, rank]) == ["rank0.1.pt.trace.json.gz"]
    assert untrained_traces([launcher]) == []            # inference: the whole-run trace is the run


def test_steps_are_done_when_every_stepping_rank_and_the_whole_world_flushed() -> None:
    def rank(r: int, stopped: str | None) -> ProcessReport:
        return ProcessReport(pid=10 + r, rank=r, world_size=4, optimizer_steps=6, stopped=stopped)
    assert not all_stopped([rank(0, "steps"), rank(1, None)])
    assert not all_stopped([rank(0, "steps"), rank(1, "steps")])       # 2 of a world of 4 have stepped
    assert all_stopped([rank(r, "steps") for r in range(4)])
    assert not all_stopped([ProcessReport(pid=1)])                      # nothing stepped yet
    assert AttachSettings(run_dir="r", state_dir="s", wait=2, warmup=1, active=3, repeat=2).steps_needed == 12


def test_only_the_boot_folder_goes_on_the_commands_path() -> None:
    env = cli.child_env(AttachSettings(run_dir="r", state_dir="s"), {"PYTHONPATH": "/u/src", "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(cli.BOOT_DIR), "/u/src"])
    assert sorted(p.name for p in cli.BOOT_DIR.iterdir() if p.suffix == ".py") == [
        "__init__.py", "_scalescope_private.py", "sitecustomize.py"]     # no models / profiler / analysis


# --- ranks however they were started -------------------------------------------------------------
@pytest.mark.parametrize("launch", ["spawn", "start_processes", "process-spawn", "process-forkserver"])
def test_ranks_started_by_multiprocessing_are_profiled_like_torchrun_ranks(tmp_path: Path, launch: str) -> None:
    res = attach(tmp_path, *spawn_script("--launch", launch, "--steps", "8", "--batch", "8"), opts=("--name", "ddp"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "done on 2 ranks" in res.stdout
    run_dir = tmp_path / "traces" / "ddp"
    info, _ = read_run_json(run_dir / "run.json")
    c = info.config
    assert (info.status, c.strategy, c.device_type, c.devices, c.per_device_batch, c.global_batch) == (
        "complete", "ddp", "cpu", 2, 8, 16)
    assert info.results.images == 128                          # 8 steps x 8 images x 2 ranks
    assert [t.name.split(".")[0] for t in run_traces(run_dir)] == ["rank0", "rank1"]   # not the parent that waits
    assert all(step_names(t) == ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"] for t in run_traces(run_dir))
    s = Analysis([run_dir]).summary()["runs"][0]
    assert s["strategy"] == "ddp" and s["shares"]["communication"] > 0 and s["shares"]["compute"] > 0
    assert no_state_left(tmp_path)


def test_a_shell_wrapper_starting_forked_ranks_with_loader_workers(tmp_path: Path) -> None:
    wrapper = tmp_path / "run.sh"
    wrapper.write_text('#!/bin/bash\necho "job starts"\n"$@"\necho "job ends"\n')
    cmd = spawn_script("--launch", "process-fork", "--workers", "1", "--steps", "8", "--batch", "4")
    res = attach(tmp_path, "bash", str(wrapper), *cmd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines()[0] == "job starts" and "job ends" in res.stdout
    run_dir = tmp_path / "traces" / "run-2cpu"                 # named for the wrapper and what it trained on
    info, _ = read_run_json(run_dir / "run.json")
    assert (info.config.strategy, info.config.devices, info.config.global_batch, info.config.workers) == (
        "ddp", 2, 8, 1)
    assert [t.name.split(".")[0] for t in run_traces(run_dir)] == ["rank0", "rank1"]   # DataLoader workers: none


# --- the user's own modules ------------------------------------------------------------------------
USER_SCRIPT = """\
import torch, models, profiler
from torch.utils.data import DataLoader, TensorDataset
print("models:", models.__file__)
print("profiler:", profiler.__file__, profiler.tag())
net = models.Net()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loader = DataLoader(TensorDataset(torch.randn(96, 12), torch.randint(0, 3, (96,))), batch_size=8)
for x, y in loader:
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
"""


def _user_project(tmp: Path) -> tuple[Path, Path]:
    src = tmp / "proj" / "src"
    (src / "models").mkdir(parents=True)
    (src / "models" / "__init__.py").write_text(
        "from torch import nn\n\nclass Net(nn.Sequential):\n"
        "    def __init__(self):\n        super().__init__(nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))\n")
    (src / "profiler.py").write_text("def tag():\n    return 'the user profiler'\n")
    (src / "analysis.py").write_text("")
    app = tmp / "app"
    app.mkdir()
    (app / "train.py").write_text(USER_SCRIPT)
    return src, app / "train.py"


def test_the_users_own_models_and_profiler_modules_win(tmp_path: Path) -> None:
    src, script = _user_project(tmp_path)
    # scalescope_attach runs whatever the user's path holds (python -m profiler.attach would find theirs);
    # scalescope is not on PYTHONPATH at all: the child sees only the boot folder and the user's src/
    res = attach(tmp_path, PY, str(script), entry=(str(REPO / "scalescope_attach.py"),),
                 env={"PYTHONPATH": str(src)}, repo_on_path=False)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    assert lines["models"] == str(src / "models" / "__init__.py")
    assert lines["profiler"] == f"{src / 'profiler.py'} the user profiler"
    run_dir = tmp_path / "traces" / "train-1cpu"
    info, _ = read_run_json(run_dir / "run.json")
    assert (info.status, info.config.strategy, info.config.global_batch, info.results.steps) == (
        "complete", "single", 8, 12)
    assert [layer.name for layer in info.model.layers] == ["0", "2"]
    assert len(run_traces(run_dir)) == 1


def test_the_same_holds_when_scalescope_is_pip_installed(tmp_path: Path) -> None:
    src, script = _user_project(tmp_path)
    build = tmp_path / "build-src"         # built from a copy: the clone gets no build/ or egg-info
    build.mkdir()
    for name in ("pyproject.toml", "README.md", "scalescope_attach.py"):
        shutil.copy(REPO / name, build / name)
    for pkg in ("models", "profiler", "analysis"):
        shutil.copytree(REPO / pkg, build / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                          "--target", str(site), str(build)], capture_output=True, text=True, timeout=300,
                         env=_env(tmp_path, repo_on_path=False))
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (site / "profiler" / "attach" / "boot" / "sitecustomize.py").is_file()
    # the user's src first, the installed scalescope after it; the clone nowhere
    res = attach(tmp_path, PY, str(script), entry=("-m", "scalescope_attach"),
                 env={"PYTHONPATH": os.pathsep.join([str(src), str(site)])}, repo_on_path=False,
                 cwd=tmp_path / "app")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"profiler: {src / 'profiler.py'} the user profiler" in res.stdout
    info, _ = read_run_json(tmp_path / "traces" / "train-1cpu" / "run.json")
    assert (info.status, info.results.steps, len(info.model.layers)) == ("complete", 12, 2)


# --- --steps / --duration: profile a long job briefly -------------------------------------------
def test_steps_ends_a_10000_step_job_once_profiled(tmp_path: Path) -> None:
    # 8 batches x 1250 epochs = 10,000 steps at >= 50 ms each: over 8 minutes if nothing stopped it
    res = attach(tmp_path, PY, str(SCRIPTS / "plain_train.py"), "--steps", "8", "--epochs", "1250",
                 "--sleep", "0.05", opts=("--steps", "6"), timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "done:" not in res.stdout                           # the script did not run to its end
    run_dir = tmp_path / "traces" / "plain_train-1cpu"
    info, _ = read_run_json(run_dir / "run.json")
    assert (info.status, info.message) == ("complete", "stopped after 6 steps by --steps")
    assert info.results.steps == 6
    [trace] = run_traces(run_dir)
    assert step_names(trace) == ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]
    assert no_state_left(tmp_path)


def test_steps_stops_every_spawned_rank_with_its_trace(tmp_path: Path) -> None:
    res = attach(tmp_path, *spawn_script("--steps", "400", "--sleep", "0.05"), opts=("--steps", "6"), timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "traces" / "ddp_spawn-2cpu"
    info, _ = read_run_json(run_dir / "run.json")
    assert (info.status, info.message, info.results.steps, info.config.devices) == (
        "complete", "stopped after 6 steps by --steps", 6, 2)
    assert [len(step_names(t)) for t in run_traces(run_dir)] == [3, 3]


def test_duration_stops_after_the_profiled_steps_and_the_time(tmp_path: Path) -> None:
    res = attach(tmp_path, PY, str(SCRIPTS / "plain_train.py"), "--steps", "8", "--epochs", "1250",
                 "--sleep", "0.05", opts=("--duration", "1.5"), timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    info, _ = read_run_json(tmp_path / "traces" / "plain_train-1cpu" / "run.json")
    assert info.status == "complete" and info.message.startswith("stopped after 1.5 s of training by --duration")
    # >= 1.5 s at >= 50 ms a step: at least 1 + 1.5 / 0.05 steps would need 30; the host adds its own
    assert 10 <= info.results.steps < 10_000


# --- signals and the process group -----------------------------------------------------------------
def _start(tmp: Path, *command: str, opts: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "profiler.attach", "--out", str(tmp / "traces"), *opts, "--", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp), cwd=tmp)


def _trainer_started(tmp: Path, proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """The command's processes once the training process has stepped (its trace is recording)."""
    def stepped() -> bool:       # the process reports attach's parent reads (in TMPDIR, the test's tmp)
        for f in tmp.glob("scalescope-attach-*/*.json"):
            try:
                if json.loads(f.read_text()).get("optimizer_steps", 0) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False
    assert wait_for(stepped, 90), "the command did not start training"
    time.sleep(2)                 # ~10 steps of 0.2 s: the scheduled profiler is recording
    tree = running(group_of(proc.pid))
    assert any(p.name() == "sleep" for p in tree)
    return tree


WRAPPER = ('sleep 300 & "$0" "$1" --steps 8 --epochs 1250 --sleep 0.2; wait')   # a grandchild that sleeps


def test_sighup_interrupts_the_run_flushes_the_trace_and_ends_the_whole_group(tmp_path: Path) -> None:
    proc = _start(tmp_path, "bash", "-c", WRAPPER, PY, str(SCRIPTS / "plain_train.py"), opts=("--active", "50"))
    try:
        tree = _trainer_started(tmp_path, proc)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not running(tree)                                   # the sleeping grandchild too
    info, _ = read_run_json(tmp_path / "traces" / "bash-1cpu" / "run.json")
    assert info.status == "interrupted" and info.message.startswith("stopped by SIGHUP"), err[-2000:]
    [trace] = run_traces(tmp_path / "traces" / "bash-1cpu")
    assert len(step_names(trace)) >= 1
    assert proc.returncode != 0
    assert no_state_left(tmp_path)


def test_a_sigkilled_attach_takes_the_command_with_it(tmp_path: Path) -> None:
    proc = _start(tmp_path, "bash", "-c", WRAPPER, PY, str(SCRIPTS / "plain_train.py"))
    try:
        tree = _trainer_started(tmp_path, proc)
        assert len(tree) >= 3                                  # bash, sleep, the script (and its loader worker)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert wait_for(lambda: not running(tree), 20), [p.cmdline() for p in running(tree)]
    finally:
        for p in running(group_of(proc.pid)):
            p.kill()


# --- bad input: one line, exit 2, nothing lost -----------------------------------------------------
def _one_line_error(res: subprocess.CompletedProcess[str], text: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], res.stderr


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path: Path) -> None:
    script = str(SCRIPTS / "infer.py")
    for value in ("nan", "inf", "0", "-1", "x"):
        _one_line_error(attach(tmp_path, PY, script, opts=("--sample-period", value)), "--sample-period")
    _one_line_error(attach(tmp_path, PY, script, opts=("--steps", "4")),
                    "--steps 4 stops before the profiled steps are recorded: it must be at least "
                    "wait + warmup + active = 5")
    _one_line_error(attach(tmp_path, PY, script, opts=("--duration", "-3")), "--duration")
    assert not (tmp_path / "traces").exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    _one_line_error(attach(tmp_path, PY, script, opts=("--out", str(a_file))), "is not a folder")
    _one_line_error(attach(tmp_path, PY, script, opts=("--out", str(a_file / "sub"))), "is a file")
    assert a_file.read_text() == "mine\n"
    _one_line_error(attach(tmp_path, PY, script, opts=("--out", "/proc/1/scalescope")), "cannot write the run folder")
    assert no_state_left(tmp_path)


def test_a_full_disk_at_start_is_one_line_and_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    run_dir = tmp_path / "traces" / "infer"
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("the user's file\n")
    (run_dir / "samples.csv").symlink_to("/dev/full")         # every write: ENOSPC
    res = attach(tmp_path, PY, str(SCRIPTS / "infer.py"))
    _one_line_error(res, "No space left on device")
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    assert (run_dir / "notes.txt").read_text() == "the user's file\n"
    assert no_state_left(tmp_path)


def test_an_empty_folder_is_no_run_and_attach_may_use_it(tmp_path: Path) -> None:
    (tmp_path / "traces" / "infer").mkdir(parents=True)       # what a failed start could leave
    res = attach(tmp_path, PY, str(SCRIPTS / "infer.py"))
    assert res.returncode == 0, res.stderr
    again = attach(tmp_path, PY, str(SCRIPTS / "infer.py"))   # now it holds a run: refused
    _one_line_error(again, "already holds a run")


# --- DataParallel on a machine without GPUs ---------------------------------------------------------
def test_per_layer_data_parallel_without_gpus_is_a_one_cpu_run_with_a_note(tmp_path: Path) -> None:
    res = attach(tmp_path, PY, str(SCRIPTS / "seed_style.py"), "6", "layerwise")
    assert res.returncode == 0, res.stderr[-3000:]
    info, _ = read_run_json(tmp_path / "traces" / "seed_style-1cpu" / "run.json")
    c = info.config
    assert (c.strategy, c.device_type, c.devices, c.global_batch) == ("single", "cpu", 1, 16)
    assert "attach: nn.DataParallel ran nothing in parallel: no GPU was visible, so each of its 9 wrappers " \
           "just called its module on the cpu; profiled as a single-device run" in info.notes


def test_a_disk_that_fills_mid_run_fails_the_run_and_keeps_the_commands_code(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "4m") as disk:
        # the script fills the disk at its 6th step, inside the profiled window, and ends normally
        res = subprocess.run([PY, "-m", "profiler.attach", "--out", str(disk), "--active", "30", "--",
                              PY, str(SCRIPTS / "plain_train.py"), "--steps", "8", "--epochs", "8",
                              "--fill-at", "5", "--fill-path", str(disk / "filler")],
                             capture_output=True, text=True, timeout=240, env=_env(tmp_path), cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]             # the command's own code
        assert "done: 64 steps" in res.stdout
        run_dir = disk / "plain_train-1cpu"
        info, _ = read_run_json(run_dir / "run.json")
        assert info.status == "failed"
        assert info.message.startswith("the run folder's disk filled: a trace was not written (rank0.")
        assert info.message.endswith(": No space left on device)")
        assert sorted(p.name for p in run_dir.iterdir()) == ["run.json", "samples.csv"]   # no half trace, no reserve
        assert no_state_left(tmp_path)


def test_a_ctrl_c_during_start_up_means_the_command_never_starts(tmp_path: Path) -> None:
    """The handlers are installed before anything else (main); a signal recorded by then stops attach
    before Popen. Here the signal is recorded first, as if it had come during start-up."""
    marker = tmp_path / "started"
    args = cli.build_parser().parse_args(["--out", str(tmp_path / "traces"), "--", "bash", "-c", f"touch {marker}"])
    signals = cli.group.Signals()
    signals.signum = signal.SIGINT
    rc = cli.run(args, cli.checked_command(args), signals)
    assert rc == 130 and not marker.exists()
    info, _ = read_run_json(tmp_path / "traces" / "bash" / "run.json")
    assert (info.status, info.message) == ("interrupted", "stopped by SIGINT before the command started")
    assert sorted(p.name for p in (tmp_path / "traces" / "bash").iterdir()) == ["run.json", "samples.csv"]
