"""`python -m models.sweep`: run a preset set of configurations, then the report.

Each configuration is a subprocess running exactly the `python -m models.train` command a
user would type (printed before it runs), into <out>/<group>/<run>/. Configurations that
need more devices than this machine has are skipped with a line saying so. Each run's stderr
passes through `models.nativelog`: Kineto's known-harmless native lines go to
<out>/<group>/<run>.log (said once per run), everything else -- progress bars, errors -- to
the terminal as it comes.
"""
from __future__ import annotations

import argparse
import codecs
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from models.nativelog import NativeLogFilter
from profiler.contract import vocab

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Config:
    strategy: str
    devices: int
    global_batch: int
    device: str                     # "cuda" | "cpu"
    workers: int
    pin_memory: bool = False

    def args(self) -> list[str]:
        a = ["--strategy", self.strategy, "--device", self.device, "--gpus", str(self.devices),
             "--batch-size", str(self.global_batch)]
        return a + (["--pin-memory"] if self.pin_memory else [])

    @property
    def label(self) -> str:
        """The run folder name models.train gives this config."""
        from models.config import run_name   # imports torch: not at start-up (--help)
        return run_name(self.strategy, self.devices, self.device, self.global_batch, None)


def fixed_workers(n: int, cores: int) -> int:
    """Enough DataLoader workers per rank to keep a GPU fed, without oversubscribing the cores."""
    return min(8, max(2, cores // n - 1))


def preset_configs(preset: str, cores: int) -> list[Config]:
    """seed: the CHTC example's three jobs; fixed: DDP at 1/2/4 GPUs; cpu: single + 2 gloo ranks."""
    if preset == "seed":
        return [Config(vocab.SINGLE, 1, 64, "cuda", 4), Config(vocab.DP, 2, 128, "cuda", 4),
                Config(vocab.DP_LAYERWISE, 4, 256, "cuda", 4)]
    if preset == "fixed":
        return [Config(vocab.DDP, n, 64 * n, "cuda", fixed_workers(n, cores), True) for n in (1, 2, 4)]
    if preset == vocab.CPU:
        return [Config(vocab.SINGLE, 1, 64, "cpu", 2), Config(vocab.DDP, 2, 64, "cpu", 1)]
    raise ValueError(preset)


def gpu_count() -> int:
    """Visible CUDA GPUs, asked in a subprocess-free way that does not keep CUDA initialised here."""
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def resolve(preset: str, gpus: int, cores: int) -> tuple[str, list[Config]]:
    """(group folder name, configs): auto = seed + fixed where CUDA GPUs exist, else cpu."""
    if preset == "auto":
        if gpus:
            return "gpu", preset_configs("seed", cores) + preset_configs("fixed", cores)
        return "cpu", preset_configs("cpu", cores)
    return preset, preset_configs(preset, cores)


# --demo: what `make demo` runs on a 2-core CPU in a few minutes -- the full seed model,
# 3 steps, the profiler recording steps 1-2 (measured: ~20 s per b64 step on 2 cores).
DEMO = {"max_steps": 3, "profile_wait": 0, "profile_warmup": 1, "profile_active": 2, "workers": 1}

EPILOG = """\
presets:
  seed   the CHTC example's jobs: single 1 GPU b64, dp 2 GPUs b128, dp-layerwise 4 GPUs b256 (4 workers)
  fixed  DDP at 1/2/4 GPUs, 64 per GPU, pinned memory, enough workers
  cpu    single on the CPU (b64) and DDP with 2 gloo processes (b64)
  auto   seed + fixed into <out>/gpu/ where CUDA GPUs exist, else cpu into <out>/cpu/
examples:
  python -m models.sweep --preset auto --demo          # what `make demo` runs
  python -m models.sweep --preset seed --max-steps 50   # the seed's three jobs, 50 steps each
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.sweep", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Run a preset set of profiled training runs, then the report.")
    p.add_argument("--preset", choices=("seed", "fixed", "cpu", "auto"), default="auto")
    p.add_argument("--out", default="traces", help="traces root; runs go to <out>/<group>/<run>/ (default: traces)")
    p.add_argument("--report-out", default="report", help="report folder (default: report)")
    p.add_argument("--demo", action="store_true",
                   help=f"short runs for a quick look: {', '.join(f'{k}={v}' for k, v in DEMO.items())} "
                        "unless given explicitly")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="override every config's DataLoader workers")
    p.add_argument("--profile-wait", type=int, default=None)
    p.add_argument("--profile-warmup", type=int, default=None)
    p.add_argument("--profile-active", type=int, default=None)
    p.add_argument("--data", choices=("synthetic", "cifar10"), default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-report", action="store_true", help="skip analysis.report at the end")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p


def passthrough(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for key in ("max_steps", "epochs", "width", "train_size", "profile_wait", "profile_warmup",
                "profile_active", "data", "data_dir"):
        value = getattr(args, key)
        if value is None and args.demo:
            value = DEMO.get(key)
        if value is not None:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def pump_stderr(stream: IO[bytes], log_path: Path) -> tuple[threading.Thread, NativeLogFilter]:
    """Copy a child's stderr to ours through the filter, chunk by chunk (tqdm never ends its lines)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w", encoding="utf-8")
    filt = NativeLogFilter(sys.stderr, log)

    def run() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while chunk := os.read(stream.fileno(), 65536):
                filt.feed(decoder.decode(chunk))
            filt.feed(decoder.decode(b"", final=True))
        finally:
            filt.close()
            log.close()
    t = threading.Thread(target=run, name="sweep-stderr", daemon=True)
    t.start()
    return t, filt


class _Forward:
    """Pass SIGTERM/SIGINT on to the running child (as SIGTERM: a terminal Ctrl-C reaches the
    child directly too, and the runner treats a repeated *same* signal as "stop now"), then stop
    the sweep after it."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.signum = 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.signum = self.signum or signum
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from profiler.cpualloc import usable_cpus

    cores = usable_cpus()
    gpus = gpu_count()
    group, configs = resolve(args.preset, gpus, cores)
    group_dir = Path(args.out) / group
    extra = passthrough(args)
    forward = _Forward()
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    outcome: list[tuple[str, str]] = []
    for cfg in configs:
        if forward.signum:
            outcome.append((cfg.label, "not run (sweep interrupted)"))
            continue
        if cfg.device == vocab.CUDA and cfg.devices > gpus:
            line = f"skipped: needs {cfg.devices} CUDA GPUs, found {gpus}"
            print(f"[sweep] {cfg.label}: {line}", flush=True)
            outcome.append((cfg.label, line))
            continue
        workers = ["--workers", str(args.workers if args.workers is not None else
                                    DEMO["workers"] if args.demo and cfg.device == vocab.CPU else cfg.workers)]
        cmd = [sys.executable, "-m", "models.train", *cfg.args(), *workers, *extra,
               "--out", str(group_dir), "--overwrite"]
        print("[sweep] " + " ".join(["python", *cmd[1:]]), flush=True)
        if args.dry_run:
            outcome.append((cfg.label, "dry run"))
            continue
        log_path = group_dir / f"{cfg.label}.log"
        forward.child = subprocess.Popen(cmd, env=child_env(), stderr=subprocess.PIPE)
        assert forward.child.stderr is not None
        pump, filt = pump_stderr(forward.child.stderr, log_path)
        code = forward.child.wait()
        pump.join(timeout=30)
        forward.child.stderr.close()
        forward.child = None
        if filt.diverted:
            print(f"[sweep] {filt.diverted} known-harmless Kineto log line(s) (e.g. gpuGetDeviceCount on a "
                  f"CPU-only machine) went to {log_path}", flush=True)
        else:
            log_path.unlink(missing_ok=True)
        outcome.append((cfg.label, {0: "complete", 1: "failed", 2: "bad input"}.get(
            code, f"interrupted (exit {code})" if code in (130, 143) else f"exit {code}")))
    print("\n[sweep] " + args.preset + (" (demo settings)" if args.demo else "") + f" -> {group_dir}")
    for label, what in outcome:
        print(f"  {label:<28} {what}")
    ran = [what for _, what in outcome if what == "complete"]
    if ran and not args.no_report and not args.dry_run and not forward.signum:
        report(group_dir, args.report_out)
        if gpus == 0:
            whatif_on_gpus(group_dir)
    if forward.signum:
        return 128 + forward.signum
    return 0 if all(w == "complete" or w.startswith("skipped") or w == "dry run" for _, w in outcome) else 1


def report(group_dir: Path, report_out: str) -> None:
    if importlib.util.find_spec("analysis.report") is None:
        print("[sweep] analysis.report is not installed here; skipping the report. "
              f"Look at the runs with: tensorboard --logdir {group_dir}")
        return
    cmd = [sys.executable, "-m", "analysis.report", str(group_dir), "--out", report_out, "--tensorboard"]
    print("[sweep] " + " ".join(["python", *cmd[1:]]), flush=True)
    code = subprocess.call(cmd, env=child_env())
    if code != 0:
        print(f"[sweep] the report exited with {code}")
    print(f"\n[sweep] look at: {report_out}/index.html (report), {report_out}/summary.json, "
          f"`tensorboard --logdir {group_dir}` (profiler traces + scalars), run folders under {group_dir}/")


WHATIF_GPU = "A100-PCIE-40GB"     # a PCIe card as in CHTC's GPU Lab; any name in analysis/datasheet.py works


def whatif_on_gpus(group_dir: Path) -> None:
    """No GPU here: the seed's 1/2/4-GPU jobs as CHTC ran them (4 DataLoader workers, request_cpus = 1),
    predicted (analytic) from the CPU single run, with the request lines that would do better."""
    singles = sorted(d for d in group_dir.glob("single-1cpu-*") if (d / "run.json").is_file())
    if not singles or importlib.util.find_spec("analysis.whatif") is None:
        return
    cmd = [sys.executable, "-m", "analysis.whatif", str(singles[0]), "--gpu", WHATIF_GPU,
           "--strategy", "single,dp,dp-layerwise,ddp", "--devices", "1,2,4", "--batch-per-device", "64",
           "--workers", "4", "--cpus", "1"]
    print(f"\n[sweep] no GPU here: the seed's jobs (4 DataLoader workers, request_cpus = 1) and the DDP fix "
          f"predicted for {WHATIF_GPU}s (analytic) from {singles[0].name}\n[sweep] "
          + " ".join(["python", *cmd[1:]]), flush=True)
    code = subprocess.call(cmd, env=child_env())
    if code != 0:
        print(f"[sweep] the what-if exited with {code}")


if __name__ == "__main__":
    sys.exit(main())
