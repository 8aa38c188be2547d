"""What does observing a step cost? Median step time of the same training loop in three modes,
measured side by side in one process (blocks interleaved, order rotated every round):

  plain     no labels, no sampler, no profiler
  observed  vocab phase labels + the NVML/host sampler running + torch.profiler in its wait phase
  active    the same with the profiler recording (CPU [+ CUDA] activities)

Ratios are against plain; the target is observed <= 1.02x. Writes the "Overhead" section of
benchmarks/RESULTS.md (other sections are kept).

    .venv/bin/python benchmarks/overhead.py --width 0.125 --batch-size 16 --rounds 60 --steps 5
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from models.convnet import ConvNet, count_parameters  # noqa: E402
from profiler.contract import vocab  # noqa: E402
from profiler.sampler import Sampler, SamplerConfig  # noqa: E402
from profiler.session import Schedule, make_profiler, phase  # noqa: E402

MODES = ("plain", "observed", "active")


def _label(on: bool, name: str) -> contextlib.AbstractContextManager[Any]:
    return phase(name) if on else contextlib.nullcontext()


def run_block(mode: str, steps: int, model: nn.Module, opt: torch.optim.Optimizer,
              batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device, tmp: Path,
              block: int) -> list[float]:
    """`steps` timed training steps in `mode`; returns per-step seconds."""
    labels = mode != "plain"
    cuda = device.type == "cuda"
    loss_fn = nn.CrossEntropyLoss()
    sampler = None
    if labels:
        config = SamplerConfig(csv_path=str(tmp / f"samples{block}.csv"), period_s=0.1,
                               n_gpus=torch.cuda.device_count() if cuda else 0)
        sampler = Sampler(config).start()
    if mode == "plain":
        prof: Any = contextlib.nullcontext()
    elif mode == "observed":   # wait longer than the block: the profiler never records
        prof = make_profiler(tmp / f"b{block}", "rank0", Schedule(wait=10 * steps, warmup=1, active=1), cuda)
    else:                      # recording from the first step to the last
        prof = make_profiler(tmp / f"b{block}", "rank0", Schedule(wait=0, warmup=1, active=steps + 1), cuda)
    times: list[float] = []
    it = iter(batches * (steps // len(batches) + 1))
    try:
        with prof as p:
            for _ in range(steps):
                t0 = time.perf_counter()
                with _label(labels, vocab.DATA_WAIT):
                    x, y = next(it)
                with _label(labels, vocab.H2D):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _label(labels, vocab.FORWARD):
                    out = model(x)
                with _label(labels, vocab.LOSS):
                    loss = loss_fn(out, y)
                with _label(labels, vocab.BACKWARD):
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                with _label(labels, vocab.OPTIMIZER):
                    opt.step()
                float(loss.detach())
                if p is not None:
                    p.step()
                times.append(time.perf_counter() - t0)
    finally:
        if sampler is not None:
            sampler.stop()
    return times


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = ConvNet(width=args.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [(torch.randn(args.batch_size, 3, 32, 32).pin_memory() if device.type == "cuda"
                else torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,)))
               for _ in range(4)]
    per_mode: dict[str, list[float]] = {m: [] for m in MODES}
    round_ratio: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        run_block("plain", args.steps, model, opt, batches, device, tmp, -1)   # warm up allocator/kernels
        block = 0
        for r in tqdm(range(args.rounds), desc="overhead rounds", unit="round"):
            order = MODES[r % 3:] + MODES[:r % 3]
            this_round: dict[str, float] = {}
            for mode in order:
                times = run_block(mode, args.steps, model, opt, batches, device, tmp, block)[1:]
                per_mode[mode] += times
                this_round[mode] = statistics.median(times)
                block += 1
            for m in MODES:   # paired: each mode against plain measured in the same round
                round_ratio[m].append(this_round[m] / this_round["plain"])
    med = {m: statistics.median(v) for m, v in per_mode.items()}
    return {"device": device, "params": count_parameters(model), "median_s": med,
            "ratio": {m: statistics.median(round_ratio[m]) for m in MODES},
            "ratio_iqr": {m: _iqr(round_ratio[m]) for m in MODES},
            "n": {m: len(v) for m, v in per_mode.items()}}


def _iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return (min(values), max(values))
    q = statistics.quantiles(values, n=4)
    return (q[0], q[2])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{socket.gethostname()}: {cpu}, {len(os.sched_getaffinity(0))} cores, {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def section(res: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    rows = "\n".join(f"| {m} | {res['median_s'][m] * 1e3:.1f} | {res['ratio'][m]:.3f}x | "
                     f"{res['ratio_iqr'][m][0]:.3f}-{res['ratio_iqr'][m][1]:.3f} | {res['n'][m]} |" for m in MODES)
    verdict = "meets" if res["ratio"]["observed"] <= 1.02 else "misses"
    return f"""## Overhead

What watching a step costs: the same loop, interleaved blocks of {args.steps} steps, {args.rounds} rounds
(mode order rotated each round, first step of each block dropped). "vs plain" is the median over
rounds of (mode's median step / plain's median step in the same round), with its interquartile range.

- machine: {machine()}
- model: ConvNet width {args.width} ({res['params']:,} parameters), batch {args.batch_size}, device {res['device']}
- command: `{command}`
- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}

| mode | median step ms | vs plain | IQR of round ratios | steps |
|---|---|---|---|---|
{rows}

`observed` = phase labels + NVML/host sampler (10 Hz) + profiler in its wait phase; `active` = profiler
recording. The observed ratio {verdict} the 1.02x target. Timings on a shared machine are noisy; the
interleaving makes the three modes share the same noise.
"""


def write_results(path: Path, text: str) -> None:
    """Replace (or append) the "## Overhead" section, keeping every other section."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## Overhead\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _m: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--steps", type=int, default=5, help="steps per block")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    res = measure(args)
    command = "python benchmarks/overhead.py " + " ".join(sys.argv[1:])
    text = section(res, args, command.strip())
    print(text)
    if not args.no_write:
        write_results(args.results, text)
        print(f"written: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
