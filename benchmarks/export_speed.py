"""`python -m analysis.export` on an 8-rank run: time, output size and peak memory.

The run is 8 copies of the largest real trace in ../shared/anchors (tb_plugin's ResNet50 on one
V100, 1.1 MB gz / 35 MB of JSON, ~78k complete events each: the trace holds call stacks and shapes
the export does not carry) named rank0..rank7; without ../shared, 8 copies of the tiny DDP traces in
tests/data. Each export runs in a fresh subprocess; its time is taken inside the child (the export,
not interpreter start-up), its peak RSS is the child's VmHWM. Prints only (RESULTS.md is written by hand).

    .venv/bin/python benchmarks/export_speed.py [--ranks 8] [--repeat 3] [--tmp DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANCHOR = REPO.parent / "shared/anchors/tb_plugin/resnet50_num_workers_0/worker0.1623143089861.pt.trace.json.gz"
TINY = [REPO / "tests/data/ddp_gloo_rank0_tiny.pt.trace.json.gz", REPO / "tests/data/ddp_gloo_rank1_tiny.pt.trace.json.gz"]

CHILD = r"""
import json, sys, time
from analysis.export.cli import main
t = time.perf_counter()
rc = main([sys.argv[1], "--out", sys.argv[2], "--progress", "off"])
dt = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"rc": rc, "seconds": dt, "peak_rss_mib": hwm / 1024}))
"""


def build_run(root: Path, ranks: int) -> tuple[Path, str]:
    run = root / f"bench-{ranks}gpu"
    run.mkdir(parents=True)
    sources = [ANCHOR] if ANCHOR.exists() else TINY
    for r in range(ranks):
        shutil.copy(sources[r % len(sources)], run / f"rank{r}.1623143089861.pt.trace.json.gz")
    what = (f"{ranks} copies of {ANCHOR.relative_to(REPO.parent)}" if ANCHOR.exists()
            else f"{ranks} copies of the tiny DDP traces in tests/data (../shared/anchors not found)")
    return run, what


def export_once(run: Path, out: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, str(run), str(out)], cwd=REPO, capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        sys.exit(f"export failed: {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="exports per format; the best time is shown")
    ap.add_argument("--tmp", type=Path, default=None, help="where the run and the outputs go (removed after)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.tmp, prefix="export-bench-") as tmp:
        run, what = build_run(Path(tmp), a.ranks)
        inputs = sum(p.stat().st_size for p in run.iterdir())
        print(f"input: {what}, {inputs / 2**20:.1f} MiB of gzip")
        for name in ("merged.json", "merged.json.gz"):
            out = Path(tmp) / name
            runs = [export_once(run, out) for _ in range(a.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            peak = max(r["peak_rss_mib"] for r in runs)
            with open(out, "rb") as f:
                head = f.read(2)
            times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
            kind = "gzip" if head == b"\x1f\x8b" else "plain JSON"
            print(f"{name:15s} {out.stat().st_size / 2**20:7.1f} MiB  {best['seconds']:6.2f} s "
                  f"(best of {a.repeat}: {times})  peak RSS {peak:.0f} MiB  {kind}")


if __name__ == "__main__":
    main()
