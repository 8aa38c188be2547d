"""`python -m profiler.attach [options] -- COMMAND [ARGS...]`: the parent of an attached run.

It owns the run folder as `models.train` does: checks the input (exit 2, nothing written),
writes run.json (running, then complete / failed with the command's code / interrupted),
samples the host and the whole process tree, forwards SIGTERM/SIGINT to COMMAND (as SIGTERM,
which every attached process turns into a flushed trace), and exits with COMMAND's exit code.
It never imports torch: the training processes report what they saw (profiler.attach.report).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from profiler import nvml
from profiler.attach import command as cmdline
from profiler.attach.report import ENV, AttachSettings, as_config, merge, read_reports
from profiler.contract import vocab
from profiler.contract.runfiles import clear_run_files, is_run_folder
from profiler.contract.runjson import ConfigInfo, ModelInfo, ProfilerSchedule
from profiler.runinfo import RunRecord, collect_environment
from profiler.sampler import Sampler, SamplerConfig

__all__ = ["main", "build_parser"]

BOOT_DIR = Path(__file__).resolve().parent / "boot"
REPO_ROOT = Path(__file__).resolve().parents[2]
GRACE_S = 120.0      # after forwarding a signal, how long the tree gets to flush before SIGKILL

EPILOG = """\
examples:
  python -m profiler.attach -- python train.py --epochs 1
  python -m profiler.attach --name seed-dp -- python two/model.py
  python -m profiler.attach -- torchrun --nproc-per-node 2 train_ddp.py
  python -m analysis.report traces/train-1cpu       # the attached run, explained

Every Python process of COMMAND that imports torch is profiled (not DataLoader workers, not
torchrun's agent): the schedule advances on each optimizer step; the steps before the first one
count as the first `wait` step. The folder is <out>/<name>, renamed <name>-<N><gpu|cpu> at the end
when the processes showed how many devices of which kind they trained on (not with --name).
"""


class UsageError(Exception):
    """Bad input: one line, exit 2, nothing written."""


def _count(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < (1 if name == "active" else 0):
            raise argparse.ArgumentTypeError(f"{name} must be >= {1 if name == 'active' else 0}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m profiler.attach", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Profile an unchanged training script into a scalescope run folder.")
    p.add_argument("--out", default="traces", help="parent folder of the run folder (default: traces)")
    p.add_argument("--name", default=None, help="run folder name (default: the script's name, with -<N><gpu|cpu>)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of an existing run folder")
    p.add_argument("--wait", type=_count("wait"), default=1, help="optimizer steps skipped (default 1: the first)")
    p.add_argument("--warmup", type=_count("warmup"), default=1, help="steps profiled but not kept (default 1)")
    p.add_argument("--active", type=_count("active"), default=3, help="steps recorded (default 3)")
    p.add_argument("--repeat", type=_count("repeat"), default=1, help="cycles of wait+warmup+active (0: forever)")
    p.add_argument("--sample-period", type=float, default=0.1, help="seconds between host/NVML samples (default 0.1)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return p


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command: python -m profiler.attach [options] -- COMMAND [ARGS...]")
    if cmdline.resolve_executable(cmd[0]) is None:
        raise UsageError(f"command not found: {cmd[0]}")
    if not args.sample_period > 0:
        raise UsageError(f"--sample-period must be positive, got {args.sample_period}")
    return cmd


def visible_gpus(environ: dict[str, str] | os._Environ[str]) -> int:
    """CUDA devices the command can see, from CUDA_VISIBLE_DEVICES or else NVML (0 without either)."""
    visible = nvml.parse_visible_devices(environ.get("CUDA_VISIBLE_DEVICES"))
    if visible is not None:
        return len(visible)
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


def child_env(settings: AttachSettings) -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(BOOT_DIR), str(REPO_ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env[ENV] = msgspec.json.encode(settings).decode()
    return env


class _Signals:
    """SIGTERM/SIGINT to attach: forwarded once to COMMAND as SIGTERM; the same signal again kills the tree."""

    def __init__(self) -> None:
        self.signum = 0
        self.at: float | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def install(self) -> "_Signals":
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        child = self.child
        if self.signum and child is not None and child.poll() is None and signum == self.signum \
                and self.at is not None and time.monotonic() - self.at > 1.0:
            _kill_tree(child.pid)
            return
        if not self.signum:
            self.signum, self.at = signum, time.monotonic()
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)


def _kill_tree(pid: int) -> None:
    try:
        import psutil
        procs = psutil.Process(pid).children(recursive=True)
    except Exception:
        procs = []
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _final_name(name: str, config: dict[str, object]) -> str:
    devices, kind = config.get("devices"), config.get("device_type")
    if isinstance(devices, int) and kind in ("cuda", "cpu"):
        return f"{name}-{devices}{'gpu' if kind == 'cuda' else 'cpu'}"
    return name


def run(args: argparse.Namespace, cmd: list[str]) -> int:
    name = args.name or cmdline.script_name(cmd)
    out = Path(args.out).expanduser()
    run_dir = out / name
    if is_run_folder(run_dir) and not args.overwrite:
        raise UsageError(f"{run_dir} already holds a run; pass --overwrite to replace it, or --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if args.overwrite:
        left = clear_run_files(run_dir)
        if left:
            notes.append(f"--overwrite kept files this run did not write: {', '.join(left[:10])}")
    state_dir = Path(tempfile.mkdtemp(prefix="scalescope-attach-"))
    settings = AttachSettings(run_dir=str(run_dir.resolve()), state_dir=str(state_dir), wait=args.wait,
                              warmup=args.warmup, active=args.active, repeat=args.repeat)
    schedule = ProfilerSchedule(wait=args.wait, warmup=args.warmup, active=args.active, repeat=args.repeat)
    record = RunRecord(run_dir, name, ConfigInfo(profiler=schedule, sample_period_s=args.sample_period,
                                                 argv=["profiler.attach", "--", *cmd]))
    n_gpus = visible_gpus(os.environ)
    sampler = Sampler(SamplerConfig(csv_path=str(run_dir / vocab.SAMPLES_CSV), period_s=args.sample_period,
                                    n_gpus=n_gpus, root_pid=os.getpid()))
    signals = _Signals().install()
    record.start(collect_environment(n_gpus, None, with_torch=False), ModelInfo())
    sampler.start()
    t0 = time.perf_counter()
    rc: int
    try:
        try:
            signals.child = subprocess.Popen(cmd, env=child_env(settings))
        except OSError as exc:       # found but not runnable (permissions, bad interpreter line)
            sampler.stop()
            record.finish(vocab.STATUS_FAILED, f"could not start {cmd[0]}: {exc.strerror or exc}", None, notes)
            print(f"error: could not start {cmd[0]}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        rc = _wait(signals)
    finally:
        wall = time.perf_counter() - t0
        sampler.stop()
    reports, read_notes = read_reports(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    merged = merge(reports, wall)
    traces = sorted(p.name for s in vocab.TRACE_SUFFIXES for p in run_dir.glob(f"*{s}"))
    notes += read_notes + merged.notes + sampler.notes
    if reports and not traces:
        notes.append(f"no trace was written: the processes exited before the profiler's active steps "
                     f"(wait {args.wait}, warmup {args.warmup}, active {args.active} optimizer steps)")
    info = record.info
    info.config = as_config(info.config, merged)
    if merged.model is not None:
        info.model = merged.model
    env = info.environment
    env.torch, env.cuda, env.cudnn = merged.versions
    if merged.cuda_devices:
        env.cuda_devices = merged.cuda_devices
    status, message = _status(rc, signals.signum)
    record.finish(status, message, merged.results, notes)
    final = run_dir
    if not args.name:
        target = out / _final_name(name, merged.config)
        if target != run_dir:
            if is_run_folder(target) and args.overwrite:
                clear_run_files(target)
            if target.exists() and any(target.iterdir()):
                print(f"note: {target} exists; this run stays in {run_dir} (--overwrite replaces it)", file=sys.stderr)
            else:
                if target.exists():
                    target.rmdir()
                run_dir.rename(target)
                final = target
                record.run_dir, record.path = target, target / vocab.RUN_JSON
                info.name = target.name
                record.write()
    print(f"run {status}: {final} ({len(traces)} trace{'s' if len(traces) != 1 else ''})", file=sys.stderr)
    return rc


def _wait(signals: _Signals) -> int:
    child = signals.child
    assert child is not None
    while True:
        try:
            rc = child.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if signals.at is not None and time.monotonic() - signals.at > GRACE_S:
                _kill_tree(child.pid)
    return 128 - rc if rc < 0 else rc


def _status(rc: int, signum: int) -> tuple[str, str | None]:
    if signum:
        return vocab.STATUS_INTERRUPTED, f"stopped by {signal.Signals(signum).name} (the command exited with code {rc})"
    if rc == 0:
        return vocab.STATUS_COMPLETE, None
    if rc > 128:
        try:
            return vocab.STATUS_FAILED, f"the command was killed by {signal.Signals(rc - 128).name} (exit code {rc})"
        except ValueError:
            pass
    return vocab.STATUS_FAILED, f"the command exited with code {rc}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cmd = _command(args)
        return run(args, cmd)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
