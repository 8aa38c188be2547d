"""`python -m profiler.attach [options] -- COMMAND [ARGS...]`: the parent of an attached run.

It owns the run folder as `models.train` does: checks the input (exit 2, nothing written),
writes run.json (running, then complete / failed with the command's code / interrupted),
samples the host and the whole process tree, runs COMMAND in its own process group and forwards
SIGTERM/SIGINT/SIGHUP to all of it (as SIGTERM, which every attached process turns into a flushed
trace), stops it after `--steps` / `--duration`, leaves nothing of it running, and exits with
COMMAND's exit code (0 when it stopped it on purpose). It never imports torch: the training
processes report what they saw (profiler.attach.report). The options are `args`'s, the run folder's
making, reserve, final write and rename are `runfolder`'s.
"""
from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from .. import nvml
from . import command as cmdline
from . import group, runfolder
from .args import UsageError, build_parser, checked_command
from .report import ENV, AttachSettings, ProcessReport, all_stopped, as_config, merge, read_reports, untrained_traces
from ..contract import vocab
from ..contract.runfiles import clear_run_files, is_run_folder
from ..contract.runjson import ConfigInfo, ModelInfo, ProfilerSchedule
from ..runinfo import RunRecord, collect_environment
from ..sampler import Sampler, SamplerConfig

__all__ = ["main", "build_parser"]


BOOT_DIR = Path(__file__).resolve().parent / "boot"
GRACE_S = 120.0       # after a signal or a stop, how long the tree gets to flush before SIGKILL
LEFTOVER_GRACE_S = 10.0   # the group's processes still running after its leader exited
POLL_S = 0.25


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


def child_env(settings: AttachSettings, environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """COMMAND's environment: the boot folder first on PYTHONPATH and nothing else of scalescope's."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env[ENV] = msgspec.json.encode(settings).decode()
    return env


def run(args: argparse.Namespace, cmd: list[str], signals: group.Signals) -> int:
    name = args.name or cmdline.script_name(cmd)
    out = Path(args.out).expanduser()
    run_dir = out / name
    runfolder.check_out(out, run_dir)
    if is_run_folder(run_dir) and not args.overwrite:
        raise UsageError(f"{run_dir} already holds a run; pass --overwrite to replace it, or --name")
    made = runfolder.made_folders(run_dir)
    state_dir = Path(tempfile.mkdtemp(prefix="scalescope-attach-"))
    settings = AttachSettings(run_dir=str(run_dir.resolve()), state_dir=str(state_dir), wait=args.wait,
                              warmup=args.warmup, active=args.active, repeat=args.repeat,
                              stop_steps=args.steps, duration_s=args.duration)
    schedule = ProfilerSchedule(wait=args.wait, warmup=args.warmup, active=args.active, repeat=args.repeat)
    record = RunRecord(run_dir, name, ConfigInfo(profiler=schedule, sample_period_s=args.sample_period,
                                                 argv=["profiler.attach", "--", *cmd]))
    notes: list[str] = []
    n_gpus = visible_gpus(os.environ)
    sampler = Sampler(SamplerConfig(csv_path=str(run_dir / vocab.SAMPLES_CSV), period_s=args.sample_period,
                                    n_gpus=n_gpus, root_pid=os.getpid()))
    try:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if args.overwrite:
                left = clear_run_files(run_dir)
                if left:
                    notes.append(f"--overwrite kept files this run did not write: {', '.join(left[:10])}")
            record.start(collect_environment(n_gpus, None, with_torch=False), ModelInfo())
            runfolder.reserve(run_dir)
            sampler.start()
        except OSError as exc:
            sampler.stop()
            runfolder.undo_start(run_dir, made)
            raise UsageError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}") from None
        return _run_command(args, cmd, signals, settings, record, sampler, notes, out, name)
    finally:
        runfolder.release(record.run_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def _run_command(args: argparse.Namespace, cmd: list[str], signals: group.Signals, settings: AttachSettings,
                 record: RunRecord, sampler: Sampler, notes: list[str], out: Path, name: str) -> int:
    run_dir = record.run_dir
    state_dir = Path(settings.state_dir)
    if signals.signum:                   # a Ctrl-C during attach's own start-up: the command never starts
        sampler.stop()
        why = signal.Signals(signals.signum).name
        runfolder.finish(record, vocab.STATUS_INTERRUPTED, f"stopped by {why} before the command started", None, notes)
        print(f"run interrupted before the command started: {run_dir}", file=sys.stderr)
        return 128 + signals.signum
    watchdog = group.Watchdog().start()
    t0 = time.perf_counter()
    try:
        child = subprocess.Popen(cmd, env=child_env(settings), start_new_session=True)
    except OSError as exc:               # found but not runnable (permissions, bad interpreter line)
        watchdog.done()
        sampler.stop()
        runfolder.finish(record, vocab.STATUS_FAILED, f"could not start {cmd[0]}: {exc.strerror or exc}", None, notes)
        print(f"error: could not start {cmd[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    pgid = child.pid
    watchdog.watch(pgid)
    if watchdog.note:
        notes.append(watchdog.note)
    signals.pgid = pgid
    signals.forward()                    # a signal that came while it started
    stopped: str | None = None
    try:
        rc, stopped = _supervise(child, pgid, signals, settings)
    except BaseException as exc:         # attach itself failed: nothing of the command outlives it
        group.end_group(pgid, LEFTOVER_GRACE_S)
        watchdog.done()
        sampler.stop()
        runfolder.finish(record, vocab.STATUS_FAILED, f"attach failed: {type(exc).__name__}: {exc}", None, notes)
        raise
    wall = time.perf_counter() - t0
    signalled = bool(signals.signum or stopped)
    group.end_group(pgid, GRACE_S if signalled else LEFTOVER_GRACE_S, signalled=signalled)
    watchdog.done()
    sampler.stop()
    reports, read_notes = read_reports(state_dir)
    merged = merge(reports, wall)
    for dropped in untrained_traces(reports):
        try:
            (run_dir / dropped).unlink()
            notes.append(f"attach: dropped {dropped}, the trace of a process that trained nothing (a launcher)")
        except OSError:
            pass
    traces = sorted(p.name for s in vocab.TRACE_SUFFIXES for p in run_dir.glob(f"*{s}"))
    notes += read_notes + merged.notes + sampler.notes
    if reports and not traces and not any(r.write_error for r in reports):
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
    status, message = _status(rc, signals.signum, stopped, settings, reports)
    full = _disk_full(reports, sampler.notes)
    if full is not None:
        status, message = vocab.STATUS_FAILED, full
    if not runfolder.finish(record, status, message, merged.results, notes):
        return rc
    runfolder.release(run_dir)
    final = runfolder.rename(record, args, out, name, merged.config)
    print(f"run {status}: {final} ({len(traces)} trace{'s' if len(traces) != 1 else ''})"
          + (f" -- {message}" if stopped else ""), file=sys.stderr)
    return 0 if stopped and full is None else rc


def _supervise(child: subprocess.Popen[bytes], pgid: int, signals: group.Signals,
               settings: AttachSettings) -> tuple[int, str | None]:
    """Wait for COMMAND; stop its group when every rank reached --steps/--duration; SIGKILL after a grace."""
    state_dir = Path(settings.state_dir)
    watch_stop = settings.stop_steps is not None or settings.duration_s is not None
    stopped: str | None = None
    stopped_at: float | None = None
    while True:
        try:
            rc = child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        asked = min((t for t in (signals.at, stopped_at) if t is not None), default=None)   # to stop, at
        if asked is not None and now - asked > GRACE_S:
            group.signal_group(pgid, signal.SIGKILL)
        if watch_stop and stopped is None and not signals.signum:
            reports, _ = read_reports(state_dir)
            if all_stopped(reports):
                stopped = "steps" if any(r.stopped == "steps" for r in reports) else "duration"
                stopped_at = now
                group.signal_group(pgid, signal.SIGTERM)
    return (128 - rc if rc < 0 else rc), stopped


def _status(rc: int, signum: int, stopped: str | None, settings: AttachSettings,
            reports: list[ProcessReport]) -> tuple[str, str | None]:
    if stopped == "steps":
        return vocab.STATUS_COMPLETE, f"stopped after {settings.stop_steps} steps by --steps"
    if stopped == "duration":
        steps = max((r.optimizer_steps for r in reports), default=0)
        return vocab.STATUS_COMPLETE, (f"stopped after {settings.duration_s:g} s of training by --duration "
                                       f"({steps} steps)")
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


def _disk_full(reports: list[ProcessReport], sampler_notes: list[str]) -> str | None:
    """A run folder whose disk filled during the run is failed, whatever the command did."""
    text = os.strerror(errno.ENOSPC)
    for r in reports:
        if r.write_error and text in r.write_error:
            return f"the run folder's disk filled: a trace was not written ({r.write_error})"
    for n in sampler_notes:
        if text in n:
            return f"the run folder's disk filled: samples.csv is incomplete ({n})"
    return None


def main(argv: list[str] | None = None) -> int:
    signals = group.Signals().install()   # first: a Ctrl-C during start-up means the command never starts
    args = build_parser().parse_args(argv)
    try:
        cmd = checked_command(args)
        return run(args, cmd, signals)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
