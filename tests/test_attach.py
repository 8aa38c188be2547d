"""profiler.attach on real processes: scripts that import nothing of scalescope, profiled unchanged."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from analysis.api import Analysis
from conftest import event_names, run_traces, step_names
from profiler.attach.command import helper_role, script_name, torchrun_args
from profiler.attach.report import ProcessReport, merge
from profiler.contract.runjson import Layer, ModelInfo, read_run_json

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "attach_scripts"
PY = sys.executable
TORCHRUN = [PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]


def attach(tmp: Path, *command: str, opts: tuple[str, ...] = (), env: dict[str, str] | None = None,
           timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, TMPDIR=str(tmp), **(env or {}))     # torchrun's log folders land in the test's tmp
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (full_env.get("PYTHONPATH"), str(REPO)) if p)
    return subprocess.run([PY, "-m", "profiler.attach", "--out", str(tmp / "traces"), *opts, "--", *command],
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=tmp)


def summary(run_dir: Path) -> dict:
    return Analysis([run_dir]).summary()["runs"][0]


# --- what the parent reads from the command's words ---------------------------------------------
def test_run_names_come_from_the_script_module_or_program() -> None:
    assert script_name(["python", "train.py", "--epochs", "1"]) == "train"
    assert script_name(["python3", "-u", "two/model.py"]) == "model"
    assert script_name(["python", "-m", "pkg.train_ddp"]) == "train_ddp"
    assert script_name(["torchrun", "--nproc-per-node", "2", "my_ddp.py", "--lr", "1"]) == "my_ddp"
    assert script_name(["python", "-m", "torch.distributed.run", "--nproc_per_node=4", "x.py"]) == "x"
    assert script_name(["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "a.b"]) == "b"
    assert script_name(["bash", "-c", "sleep 2"]) == "bash"
    assert script_name(["bash", "condor/run.sh", "--sweep", "x"]) == "run"         # a shell wrapper: its script
    assert torchrun_args(["python", "train.py"]) is None
    assert torchrun_args(["torchrun", "--nnodes", "2", "t.py"]) == ["--nnodes", "2", "t.py"]


def test_helpers_of_the_tree_are_not_profiled() -> None:
    tracker = ["/v/bin/python", "-B", "-c", "from multiprocessing.resource_tracker import main;main(5)"]
    assert helper_role(tracker, {}) == "multiprocessing's helper"
    assert helper_role(["/v/bin/python", "/v/bin/torchrun", "--nproc-per-node", "2", "t.py"], {}) == "torchrun's agent"
    assert helper_role(["/v/bin/python", "-m", "torch.distributed.run", "t.py"], {}) == "torchrun's agent"
    assert helper_role(["/v/bin/python", "-u", "t.py"], {"LOCAL_RANK": "1"}) is None     # a rank torchrun started
    assert helper_role(["/v/bin/python", "train.py"], {}) is None


# --- how the processes' reports become run.json -----------------------------------------------
def _layer(name: str, params: int) -> Layer:
    return Layer(name=name, type="Linear", parameters=params, input_shape=[4], output_shape=[2], flops=16,
                 dtype_bytes=4)


def test_two_ranks_merge_into_ddp_with_summed_images() -> None:
    model = ModelInfo(parameters=10, parameter_bytes=40, layers=[_layer("fc", 10)], forward_flops=16)
    ranks = [ProcessReport(pid=11, rank=r, world_size=2, ddp=True, device_type="cpu", first_batch=8,
                           images=72, loop_images=64, loop_s=4.0, workers=1, pin_memory=False, optimizer="Adam", optimizer_steps=8,
                           step_times_ms=[5.0, 6.0], model=model) for r in (1, 0)]
    m = merge(ranks, wall_s=9.0)      # the command's wall: imports and setup too
    assert m.config == {"strategy": "ddp", "device_type": "cpu", "devices": 2, "workers": 1, "pin_memory": False,
                        "per_device_batch": 8, "global_batch": 16}
    assert (m.results.steps, m.results.images, m.results.images_per_s) == (8, 128, 32.0)
    assert m.model is model


def test_data_parallel_wrappers_tell_dp_from_layerwise_and_an_uneven_split_stays_unknown() -> None:
    dp = ProcessReport(pid=1, dp_wrappers=1, dp_device_ids=[0, 0], device_type="cuda", first_batch=128,
                       optimizer_steps=3)
    c = merge([dp], 1.0).config      # device_ids as given: [0, 0] is two replicas on one GPU, as the runner counts it
    assert (c["strategy"], c["devices"], c["device_ids"], c["global_batch"], c["per_device_batch"]) == (
        "dp", 2, [0, 0], 128, 64)
    layerwise = ProcessReport(pid=1, dp_wrappers=9, dp_device_ids=[0, 1, 2, 3], device_type="cuda",
                              first_batch=254, optimizer_steps=3)
    m = merge([layerwise], 1.0)
    assert (m.config["strategy"], m.config["devices"], m.config["global_batch"]) == ("dp-layerwise", 4, 254)
    assert "per_device_batch" not in m.config
    assert any("254 unevenly over 4" in n for n in m.notes)


def test_no_trainer_leaves_the_config_unknown_with_a_note() -> None:
    m = merge([ProcessReport(pid=3)], 2.0)
    assert m.config == {} and m.results is None
    assert any("no optimizer step" in n for n in m.notes)
    assert any("no torch process" in n for n in merge([], 2.0).notes)


# --- real processes ------------------------------------------------------------------------------
def test_a_plain_script_gets_a_complete_run_folder_the_report_explains(tmp_path: Path) -> None:
    res = attach(tmp_path, PY, str(SCRIPTS / "plain_train.py"), "--steps", "8", "--batch", "16")
    assert res.returncode == 0, res.stderr
    assert "done: 8 steps" in res.stdout                       # the script's own output is untouched
    run_dir = tmp_path / "traces" / "plain_train-1cpu"
    info, _ = read_run_json(run_dir / "run.json")
    c = info.config
    assert (info.status, c.strategy, c.device_type, c.devices, c.global_batch, c.per_device_batch,
            c.workers, c.pin_memory) == ("complete", "single", "cpu", 1, 16, 16, 1, False)
    assert [(layer.name, layer.parameters, layer.input_shape) for layer in info.model.layers] == [
        ("conv", 224, [3, 32, 32]), ("fc", 20490, [2048])]
    assert info.model.parameters == 20714
    assert (info.results.steps, info.results.images) == (8, 128)
    assert len(info.results.step_times_ms) == 7                # the intervals between the 8 optimizer steps
    assert info.environment.torch and info.environment.torch.startswith("2.")
    [trace] = run_traces(run_dir)
    assert trace.name.startswith("rank0.")
    assert len(step_names(trace)) == 3                        # --active 3 by default
    labels = [n for n in event_names(trace, ph="X") if n.startswith("ss:")]
    assert {n: labels.count(n) for n in set(labels)} == {"ss:forward": 3, "ss:backward": 3, "ss:optimizer": 3}
    rows = (run_dir / "samples.csv").read_text().splitlines()
    assert len(rows) > 10
    s = summary(run_dir)
    assert s["strategy"] == "single" and s["shares"]["compute"] > 0.1
    assert abs(sum(s["shares"].values()) - 1.0) < 1e-6


def test_a_torchrun_ddp_script_gets_one_trace_per_rank_and_communication(tmp_path: Path) -> None:
    res = attach(tmp_path, *TORCHRUN, str(SCRIPTS / "ddp_train.py"), "--steps", "8", "--batch", "8")
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "traces" / "ddp_train-2cpu"
    info, _ = read_run_json(run_dir / "run.json")
    c = info.config
    assert (info.status, c.strategy, c.devices, c.per_device_batch, c.global_batch) == ("complete", "ddp", 2, 8, 16)
    assert info.results.images == 128                          # 8 steps x 8 images x 2 ranks
    assert [t.name.split(".")[0] for t in run_traces(run_dir)] == ["rank0", "rank1"]   # not torchrun's agent
    assert all(len(step_names(t)) == 3 for t in run_traces(run_dir))
    assert [layer.type for layer in info.model.layers] == ["Conv2d", "Linear"]
    s = summary(run_dir)
    assert s["strategy"] == "ddp" and s["shares"]["communication"] > 0 and s["shares"]["compute"] > 0


def test_the_seed_style_script_gets_its_nine_layer_table(tmp_path: Path) -> None:
    res = attach(tmp_path, PY, str(SCRIPTS / "seed_style.py"), "6", opts=("--name", "seed"))
    assert res.returncode == 0, res.stderr
    info, _ = read_run_json(tmp_path / "traces" / "seed" / "run.json")      # --name: no suffix
    assert [layer.name for layer in info.model.layers] == [f"conv{i}" for i in range(1, 7)] + ["fc1", "fc2", "fc3"]
    assert info.model.layers[6].input_shape == [64 * 8 * 8]
    assert (info.config.strategy, info.config.global_batch, info.config.workers) == ("single", 16, 1)
    assert "attach: optimizer Adam" in info.notes
    assert summary(tmp_path / "traces" / "seed")["shares"]["compute"] > 0


def test_a_script_that_raises_is_failed_with_its_code_and_the_trace_so_far(tmp_path: Path) -> None:
    res = attach(tmp_path, PY, str(SCRIPTS / "plain_train.py"), "--fail-at", "4", "--workers", "0")
    assert res.returncode == 1
    assert "deliberate failure at step 4" in res.stderr
    run_dir = tmp_path / "traces" / "plain_train-1cpu"
    info, _ = read_run_json(run_dir / "run.json")
    assert (info.status, info.message, info.results.steps) == ("failed", "the command exited with code 1", 4)
    [trace] = run_traces(run_dir)
    # optimizer steps 1-4 ran: the windows after steps 2 and 3 are recorded, and the third active
    # window (after step 4) is cut short by the exception and still kept
    assert step_names(trace) == ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]


def test_sigterm_to_attach_stops_the_ranks_and_keeps_their_traces(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p))
    proc = subprocess.Popen([PY, "-m", "profiler.attach", "--out", str(tmp_path / "traces"), "--active", "50", "--",
                             *TORCHRUN, str(SCRIPTS / "ddp_train.py"), "--steps", "60", "--sleep", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    run_json = tmp_path / "traces" / "ddp_train" / "run.json"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:        # wait until both ranks have stepped (a trace is recording)
            time.sleep(0.5)
            kids = [p for p in psutil.Process(proc.pid).children(recursive=True) if "ddp_train.py" in " ".join(p.cmdline())]
            if run_json.exists() and len(kids) >= 3 and time.monotonic() > deadline - 110:
                break
        time.sleep(3)
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]   # ranks stopped
    run_dir = tmp_path / "traces" / "ddp_train-2cpu"
    info, _ = read_run_json(run_dir / "run.json")
    assert info.status == "interrupted" and info.message.startswith("stopped by SIGTERM")
    assert proc.returncode != 0
    ts = run_traces(run_dir)
    assert [t.name.split(".")[0] for t in ts] == ["rank0", "rank1"]
    assert all(len(step_names(t)) >= 1 for t in ts)
    assert 0 < info.results.steps < 60


def test_an_inference_script_gets_a_whole_run_trace_and_a_note(tmp_path: Path) -> None:
    res = attach(tmp_path, PY, str(SCRIPTS / "infer.py"))
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "traces" / "infer"
    info, _ = read_run_json(run_dir / "run.json")
    assert info.status == "complete" and info.config.strategy is None and info.results is None
    assert any("no optimizer step" in n for n in info.notes)
    [trace] = run_traces(run_dir)
    assert step_names(trace) == ["ProfilerStep#0"]


def test_a_command_without_torch_gets_host_samples_and_a_note(tmp_path: Path) -> None:
    res = attach(tmp_path, "bash", "-c", "sleep 2")
    assert res.returncode == 0
    run_dir = tmp_path / "traces" / "bash"
    info, _ = read_run_json(run_dir / "run.json")
    assert info.status == "complete" and not run_traces(run_dir)
    assert any(n.startswith("no torch process") for n in info.notes)
    rows = [r.split(",") for r in (run_dir / "samples.csv").read_text().splitlines()[1:]]
    assert len({r[0] for r in rows if r[1] == "host"}) >= 10     # ≥ 10 host ticks over 2 s at 0.1 s


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path) -> None:
    res = attach(tmp_path, "no-such-command-xyz", "--flag")
    assert (res.returncode, res.stderr.strip()) == (2, "error: command not found: no-such-command-xyz")
    assert not (tmp_path / "traces").exists()
    res = attach(tmp_path, PY, "x.py", opts=("--active", "0"))
    assert res.returncode == 2 and "active must be >= 1" in res.stderr
    assert not (tmp_path / "traces").exists()


def test_an_existing_run_is_refused_unless_overwrite(tmp_path: Path) -> None:
    assert attach(tmp_path, PY, str(SCRIPTS / "infer.py")).returncode == 0
    before = (tmp_path / "traces" / "infer" / "run.json").read_bytes()
    res = attach(tmp_path, PY, str(SCRIPTS / "infer.py"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--overwrite" in res.stderr
    assert (tmp_path / "traces" / "infer" / "run.json").read_bytes() == before
    assert attach(tmp_path, PY, str(SCRIPTS / "infer.py"), opts=("--overwrite",)).returncode == 0
    assert len(run_traces(tmp_path / "traces" / "infer")) == 1


def test_a_sitecustomize_of_the_users_still_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "with open(os.path.join(os.environ['MARK_DIR'], f'mark-{os.getpid()}'), 'w') as f:\n"
        "    f.write(' '.join(sys.orig_argv))\n")
    res = attach(tmp_path, PY, str(SCRIPTS / "infer.py"), env={"PYTHONPATH": str(site), "MARK_DIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    ran_in = [m.read_text() for m in tmp_path.glob("mark-*")]
    assert sum("infer.py" in argv and "profiler.attach" not in argv for argv in ran_in) == 1   # the script ran it, once
    assert len(run_traces(tmp_path / "traces" / "infer")) == 1


def test_data_parallel_methods_are_labelled_with_the_contract_names() -> None:
    """nn.DataParallel only scatters on GPUs; its patched method is checked here under a real profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from profiler.attach.inprocess import _labelled

    class Fake(torch.nn.Module):
        pass

    calls = []
    scatter = _labelled(lambda self, x: calls.append(x) or x * 2, "ss:dp.scatter")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        assert scatter(Fake(), 21) == 42
    assert calls == [21]
    assert [e.key for e in prof.key_averages() if e.key.startswith("ss:")] == ["ss:dp.scatter"]
