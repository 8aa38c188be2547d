"""Reading + full breakdown of one trace: scalescope vs HTA 0.5 vs plain json.load.

Each measurement runs in a fresh subprocess; its peak RSS is that process's VmHWM
(/proc/self/status: the high-water mark of its own address space, so the parent's
pages from before exec do not count, as they would in ru_maxrss), its time is taken
inside the child (the work, not interpreter start-up or imports). Throughput is MB of uncompressed JSON per second. Inputs: the peer anchors
(../shared/anchors) and a >= 500 MB trace made by repeating a real trace's steps with
shifted timestamps, correlation ids and step numbers (written to --tmp, never kept).
HTA runs on the anchors and on a ~50 MB repeat of the same kind (it needs minutes and
several GB on 500 MB); the ratio is per-MB throughput.

    .venv/bin/python benchmarks/analysis_speed.py [--big-mb 500] [--write-results]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from tqdm import tqdm
from resultsmd import replace_section  # noqa: E402  (benchmarks/ is this script's folder)

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors"
SEED = ANCHORS / "hta" / "nccl_parser_config" / "nccl_data.json.gz"   # torch 2.x form, A100, 3 steps

CHILD = r"""
import sys, time, json, gzip, pathlib
tool, path, out = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
files = sorted(path.iterdir()) if path.is_dir() else [path]
if tool == "scalescope":
    from analysis.step.breakdown import analyse_trace
    t = time.perf_counter(); a = analyse_trace(path); info = {"steps": len(a.steps)}
elif tool in ("report", "report-seq"):
    from analysis.api import Analysis
    t = time.perf_counter(); s = Analysis([path], progress=False, jobs=1 if tool == "report-seq" else None).summary()
    info = {"runs": len(s["runs"]), "strategy": s["runs"][0]["strategy"]}
elif tool == "json.load":
    t = time.perf_counter()
    for p in files:
        with (gzip.open(p, "rt") if p.name.endswith(".gz") else open(p)) as f: doc = json.load(f)
        del doc
    info = {"files": len(files)}
elif tool == "msgspec-only":
    from analysis.trace.reader import read_bytes
    from analysis.trace.columns import DOCUMENT as _DECODER
    t = time.perf_counter(); raw = read_bytes(path)
    doc = _DECODER.decode(raw); info = {"events": len(doc.traceEvents)}
elif tool == "hta":
    import logging, tempfile, os
    logging.disable(logging.WARNING)
    from hta.trace_analysis import TraceAnalysis
    d = tempfile.mkdtemp()
    for p in files: os.symlink(p.resolve(), os.path.join(d, p.name))
    t = time.perf_counter()
    ta = TraceAnalysis(trace_dir=d)
    tb = ta.get_temporal_breakdown(visualize=False)
    ta.get_gpu_kernel_breakdown(visualize=False)
    info = {"compute_time_us": float(tb["compute_time(us)"].iloc[0])}
dt = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
import resource, os   # worker processes (the report's pool, HTA's): the largest one's peak, beside this one's
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
workers = len(os.sched_getaffinity(0)) if kids else 0     # at most this many ran at once
total = hwm + workers * kids    # a bound: forked workers also count the pages they share with this one
pathlib.Path(out).write_text(json.dumps({"seconds": dt, "peak_rss_mib": hwm / 1024, "worker_rss_mib": kids / 1024,
                                         "total_rss_mib": total / 1024, **info}))
"""


def json_size(path: Path) -> int:
    """Uncompressed bytes of a trace file (of every file, for a folder of rank traces)."""
    if path.is_dir():
        return sum(json_size(p) for p in path.iterdir())
    if not path.name.endswith(".gz"):
        return path.stat().st_size
    n = 0
    with gzip.open(path, "rb") as g:
        while chunk := g.read(1 << 24):
            n += len(chunk)
    return n


HTA_PYTHON = sys.executable   # --hta-python: HTA in its own venv (its pandas stack stays out of the lock)


def measure(tool: str, path: Path, timeout: float = 1800) -> dict:
    """Run one tool on one file in a fresh interpreter: seconds and that child's peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    python = HTA_PYTHON if tool == "hta" else sys.executable
    proc = subprocess.Popen([python, "-c", CHILD, tool, str(path), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() - t0 > timeout:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            return {"error": f"timeout after {timeout:.0f}s"}
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": (err[-1] if err else f"exit {status}")[:160]}
    res = json.loads(out.read_text())
    out.unlink()
    return res


LAYOUTS = {   # how a trace's entries are written: (head, entry joiner, how one event is written, end)
    "kineto": (lambda d: msgspec.json.encode(d)[:-1] + b',"traceEvents":[', b",",
               lambda e: b"\n  " + msgspec.json.encode(e), b"\n]}"),
    "compact": (lambda d: json.dumps(d, separators=(",", ":")).encode()[:-1] + b',"traceEvents":[', b",",
                lambda e: json.dumps(e, separators=(",", ":")).encode(), b"]}"),
    "pretty": (lambda d: json.dumps(d, indent=2).encode()[:-2] + b',\n  "traceEvents": [', b",",
               lambda e: b"\n    " + json.dumps(e, indent=2).replace("\n", "\n    ").encode(), b"\n  ]\n}"),
}


def measured_row(label: str, tool: str, path: Path, trace: Path, mb: float) -> dict:
    """One table row: `tool` run on `path` (the trace, or its folder), with throughput and memory per JSON MB."""
    r = measure(tool, path)
    r.update(input=label, tool=tool, json_mb=mb, file_mb=trace.stat().st_size / 1e6)
    if "seconds" in r:
        r["mb_per_s"] = mb / r["seconds"]
        r["rss_over_json"] = r["total_rss_mib"] * 2**20 / (mb * 1e6)
    print(json.dumps(r), flush=True)
    return r


def make_repeated(seed: Path, target_mb: float, dest: Path, gz: bool, layout: str = "kineto") -> Path:
    """Repeat the seed trace's events with shifted times, ids and step numbers until target_mb, in one of
    LAYOUTS (the same events, byte for byte the same values, whatever the layout)."""
    head_of, joiner, entry, end = LAYOUTS[layout]
    doc = msgspec.json.decode(gzip.decompress(seed.read_bytes()))
    events = doc.pop("traceEvents")
    xs = [e for e in events if "ts" in e]
    span = max(e["ts"] + e.get("dur", 0) for e in xs) - min(e["ts"] for e in xs)
    steps = sorted({int(e["name"].split("#")[1]) for e in events if str(e.get("name", "")).startswith("ProfilerStep#")})
    step_count = (steps[-1] - steps[0] + 1) if steps else 0
    one = len(msgspec.json.encode(events))
    copies = max(1, int(target_mb * 1e6 / one) + 1)
    head = head_of(doc)
    opener = (lambda p: gzip.open(p, "wb", compresslevel=1)) if gz else (lambda p: open(p, "wb"))
    with opener(dest) as f:
        f.write(head)
        for k in tqdm(range(copies), desc=f"writing {dest.name}", unit="copy"):
            shift, id_shift = k * (span + 1000.0), k * 10_000_000
            out = []
            for e in events:
                e = dict(e)
                if "ts" in e and e.get("ph") != "M":
                    e["ts"] = e["ts"] + shift
                if "id" in e and isinstance(e["id"], int):
                    e["id"] += id_shift
                a = e.get("args")
                if isinstance(a, dict) and ("correlation" in a or "External id" in a):
                    a = dict(a)
                    for key in ("correlation", "External id"):
                        if isinstance(a.get(key), int):
                            a[key] += id_shift
                    e["args"] = a
                name = e.get("name", "")
                if isinstance(name, str) and name.startswith("ProfilerStep#"):
                    e["name"] = f"ProfilerStep#{int(name.split('#')[1]) + k * step_count}"
                out.append(e)
            body = joiner.join(entry(e) for e in out)
            f.write(body if k == 0 else joiner + body)
        f.write(end)
    return dest


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores visible, {mem:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big-mb", type=float, default=500, help="size of the repeated trace (uncompressed MB)")
    ap.add_argument("--hta-mb", type=float, default=50, help="size of the repeated trace HTA also reads")
    ap.add_argument("--ranks", type=int, default=8, help="rank traces in the multi-rank run")
    ap.add_argument("--rank-mb", type=float, default=47, help="size of each rank's trace (uncompressed MB)")
    ap.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()) / "scalescope-bench")
    ap.add_argument("--skip-hta", action="store_true")
    ap.add_argument("--hta-python", default=sys.executable,
                    help="the interpreter HTA runs in (default: this one; `make bench` installs HTA here)")
    ap.add_argument("--write-results", action="store_true", help="replace the 'Analysis speed' section of RESULTS.md")
    ap.add_argument("--layouts-only", action="store_true",
                    help="only the layout comparison (the same events as Kineto's layout, compact, pretty-printed, "
                         "compact gzipped), written to RESULTS.md's 'Reading any layout' section")
    ap.add_argument("--layout-mb", type=float, default=376, help="size of each layout's trace (uncompressed MB)")
    args = ap.parse_args()
    if args.layouts_only:
        return layouts_main(args)
    global HTA_PYTHON
    HTA_PYTHON = args.hta_python
    if not SEED.exists():
        sys.exit(f"benchmark needs the peer traces: {SEED} not found")
    args.tmp.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, Path, tuple[str, ...]]] = []
    all_tools = ("scalescope", "hta", "json.load")
    for p in [ANCHORS / "hta/trace_filter/sampled_rank-0.json.gz", SEED,
              ANCHORS / "tb_plugin/resnet50_num_workers_0/worker0.1623143089861.pt.trace.json.gz"]:
        inputs.append((str(p.relative_to(ANCHORS)), p, all_tools))
    for sub in ("mid", "big_plain", "big_gz"):      # each input alone in its folder: the report reads folders
        (args.tmp / sub).mkdir(exist_ok=True)
    mid = make_repeated(SEED, args.hta_mb, args.tmp / "mid" / f"repeat_{args.hta_mb:.0f}mb.json.gz", gz=True)
    inputs.append((f"nccl_data repeated to ~{args.hta_mb:.0f} MB (.gz)", mid, all_tools))
    big_plain = make_repeated(SEED, args.big_mb, args.tmp / "big_plain" / f"repeat_{args.big_mb:.0f}mb.json", gz=False)
    inputs.append((f"nccl_data repeated to ~{args.big_mb:.0f} MB (plain)", big_plain,
                   ("scalescope", "report", "json.load", "msgspec-only")))
    big_gz = args.tmp / "big_gz" / f"repeat_{args.big_mb:.0f}mb.json.gz"
    with open(big_plain, "rb") as src, gzip.open(big_gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    inputs.append((f"nccl_data repeated to ~{args.big_mb:.0f} MB (.gz)", big_gz, ("scalescope", "report", "json.load")))
    ranks = args.tmp / f"ranks{args.ranks}"           # one run of N rank traces: the same ~rank-mb trace copied
    ranks.mkdir(exist_ok=True)
    one = make_repeated(SEED, args.rank_mb, ranks / "rank0.x.pt.trace.json", gz=False)
    for r in range(1, args.ranks):
        shutil.copyfile(one, ranks / f"rank{r}.x.pt.trace.json")
    inputs.append((f"{args.ranks} ranks x ~{args.rank_mb:.0f} MB (one run)", ranks,
                   ("report-seq", "report", "json.load", "hta")))

    os.sync()      # the inputs just written (~1.5 GB) are flushed first: writeback must not run under the timings
    rows = []
    for label, path, tools in tqdm(inputs, desc="inputs"):
        mb = json_size(path) / 1e6
        for tool in tools:
            if tool == "hta" and args.skip_hta:
                continue
            rows.append(measured_row(label, tool, path, path, mb))
    table = render(rows)
    print(table)
    if args.write_results:
        write_section(table)
    for p in (mid, big_plain, big_gz):
        p.unlink(missing_ok=True)
    shutil.rmtree(ranks, ignore_errors=True)


def layouts_main(args: argparse.Namespace) -> None:
    """The same events in every layout, each read by the report, json.load and one msgspec decode."""
    if not SEED.exists():
        sys.exit(f"benchmark needs the peer traces: {SEED} not found")
    args.tmp.mkdir(parents=True, exist_ok=True)
    inputs = []
    for layout, gz in (("kineto", False), ("compact", False), ("pretty", False), ("compact", True)):
        label = f"{layout}{' .gz' if gz else ''}"
        folder = args.tmp / f"layout_{layout}{'_gz' if gz else ''}"
        folder.mkdir(exist_ok=True)
        dest = folder / f"rank0.1.pt.trace.json{'.gz' if gz else ''}"
        make_repeated(SEED, args.layout_mb, dest, gz=gz, layout=layout)
        inputs.append((label, folder, dest))
    os.sync()
    rows = []
    for label, folder, dest in tqdm(inputs, desc="layouts"):
        mb = json_size(dest) / 1e6
        for tool in ("report", "json.load", "msgspec-only"):
            rows.append(measured_row(label, tool, folder if tool == "report" else dest, dest, mb))
    table = render_layouts(rows)
    print(table)
    if args.write_results:
        write_section(table, "## Reading any layout", LAYOUT_NOTES,
                      "Each cell: a fresh subprocess; seconds of work (after imports); all processes' peak memory "
                      "(see Analysis speed).")
    for _, folder, _ in inputs:
        shutil.rmtree(folder, ignore_errors=True)


def render_layouts(rows: list[dict]) -> str:
    by = {(r["input"], r["tool"]): r for r in rows}
    lines = ["| layout | JSON MB | file MB | report s | MB/s | json.load s | msgspec whole s | report / json.load "
             "| report / msgspec | report memory / JSON | json.load memory / JSON |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label in dict.fromkeys(r["input"] for r in rows):
        rep, jl, ms = (by.get((label, t), {}) for t in ("report", "json.load", "msgspec-only"))
        def sec(r: dict) -> str:
            return f"{r['seconds']:.2f}" if "seconds" in r else f"failed: {r.get('error', '?')}"
        ratio = lambda a, b: f"{a['seconds'] / b['seconds']:.2f}x" if "seconds" in a and "seconds" in b else "–"
        lines.append(f"| {label} | {rep.get('json_mb', 0):.0f} | {rep.get('file_mb', 0):.0f} | {sec(rep)} | "
                     f"{rep.get('mb_per_s', 0):.0f} | {sec(jl)} | {sec(ms)} | {ratio(rep, jl)} | {ratio(rep, ms)} | "
                     f"{rep.get('rss_over_json', 0):.2f} | {jl.get('rss_over_json', 0):.2f} |")
    return "\n".join(lines)


LAYOUT_NOTES = """
The same events (nccl_parser_config's, repeated along time as in Analysis speed) written four ways:
Kineto's own layout (every entry on a new line indented two spaces), compact `json.dumps(separators=(",",
":"))` (how a tool that re-saves a trace writes it), `json.dumps(indent=2)`, and the compact text gzipped.
report = the whole report of the folder (`run_report` + `to_summary`, default `--jobs`: the one large trace
is split across the cores); json.load = the stdlib on the decompressed text; msgspec whole = one msgspec
decode of the whole text with the reader's tolerant types. Entry boundaries come from the JSON structure
("}" "," "{" with only whitespace between, validated by the decode itself: `analysis/tracecolumns.py`),
so every layout streams ~4 MB at a time and splits across processes the same way. The 2-vCPU VM is
shared: in this run json.load took 14.8 s on the Kineto-layout file where the issue measured 7.3 s, so
absolute MB/s read ~2x low; the ratios, measured side by side in one run, are the figures to compare
(before this change: compact 1.33x json.load at 3.5x the JSON in memory, pretty-printed 2.41x).
"""


def render(rows: list[dict]) -> str:
    lines = ["| input | JSON MB | tool | seconds | MB/s | peak RSS MiB | largest worker MiB | all processes MiB "
             "| all / JSON size |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['input']} | {r['json_mb']:.1f} | {r['tool']} | failed: {r['error']} | | | | | |")
        else:
            kids = r.get("worker_rss_mib") or 0
            lines.append(f"| {r['input']} | {r['json_mb']:.1f} | {r['tool']} | {r['seconds']:.2f} | "
                         f"{r['mb_per_s']:.0f} | {r['peak_rss_mib']:.0f} | {f'{kids:.0f}' if kids else '–'} | "
                         f"{r['total_rss_mib']:.0f} | {r['rss_over_json']:.2f} |")
    ratios = []
    by = {(r["input"], r["tool"]): r for r in rows if "mb_per_s" in r}
    for (inp, tool), r in by.items():
        if tool == "scalescope" and (inp, "hta") in by:
            ratios.append(f"- {inp}: scalescope {r['mb_per_s'] / by[(inp, 'hta')]['mb_per_s']:.1f}x HTA's throughput, "
                          f"{r['mb_per_s'] / by[(inp, 'json.load')]['mb_per_s']:.1f}x json.load's")
    for (inp, tool), r in by.items():
        if tool == "report" and (inp, "report-seq") in by and (inp, "json.load") in by:
            ratios.append(f"- {inp}: the report in parallel takes {r['seconds'] / by[(inp, 'json.load')]['seconds']:.2f}x "
                          f"json.load's time on the same files (one by one: "
                          f"{by[(inp, 'report-seq')]['seconds'] / by[(inp, 'json.load')]['seconds']:.2f}x)"
                          + (f", HTA {by[(inp, 'hta')]['seconds'] / by[(inp, 'json.load')]['seconds']:.2f}x"
                             if (inp, "hta") in by else ""))
    for (inp, tool), r in by.items():
        if tool == "report" and "repeated" in inp and r["json_mb"] > 300:     # the large single trace
            ratios.append(f"- {inp}, the whole report: {r['mb_per_s']:.0f} MB/s (goal >= 150), all processes at most "
                          f"{r['rss_over_json']:.2f}x the JSON (goal <= 2); one process (scalescope row): "
                          f"{by[(inp, 'scalescope')]['mb_per_s']:.0f} MB/s, "
                          f"{by[(inp, 'scalescope')]['rss_over_json']:.2f}x" if (inp, "scalescope") in by else "")
    return "\n".join(lines + [""] + [r for r in ratios if r])


NOTES = """
What ran: scalescope = `analysis.step.breakdown.analyse_trace` in one process (read + classify + full
breakdown, per-device view, phase totals, memcpy stats); report = the whole report for the folder
(`run_report` + `to_summary`: every trace, the run's metrics, findings, recommendations) with its default
`--jobs`: several traces go to a process pool sized to the cores and memory, a single large trace is
decoded by all the cores (`analysis/readsplit.py`: a plain file cut at entry boundaries into ranges the
workers read themselves; a gzip file inflated once by the parent and handed out block by block);
report-seq = the same with `--jobs 1`; hta = HTA 0.5 `TraceAnalysis` load + `get_temporal_breakdown` +
`get_gpu_kernel_breakdown`; json.load = the stdlib on the same (decompressed) text; msgspec-only = one
whole-text msgspec decode (the tolerant types) alone. Peak RSS = the measured process's VmHWM; largest
worker = the biggest child's peak; all processes = peak RSS + cores x largest worker, an upper bound
(forked workers also count the pages they share with their parent), and that bound is what
"all / JSON size" divides. HTA was not run on the 500 MB trace (minutes and several GB there); the HTA
ratio is per-MB throughput on the anchors and on the ~50 MB repeat. The repeats copy
nccl_parser_config's events (torch 2.x form) with timestamps, correlation/flow ids and ProfilerStep
numbers shifted, written in Kineto's layout.

Reading (`analysis/tracecolumns.py`): msgspec structs that name only the needed fields, typed strictly
as Kineto writes them (a chunk with odd values is decoded again with tolerant types, same columns), so
each column comes out of one C-level pass; names interned in first-seen order. The text is decoded as it
is read, ~4 MB of whole entries at a time (Kineto starts every entry on a new line indented two
spaces), so no process ever holds the whole text; events are put in start order once, which lets every
interval union skip its sort, and the steps' parts come from one priority sweep over all the windows.
Fresh pages are expensive on this VM (first touch ~1 ms per MB): the columns are written once into
their final arrays and come back from the workers through a shared map rather than a pipe.

The inputs (~1.5 GB) are written and flushed (`os.sync`) before anything is timed: runs of the same
code timed while the kernel was still writing ~500 MB of them back read 140-159 MB/s for the large
trace's report. The machine is 2 vCPUs in a microVM shared with other jobs, so absolute seconds vary
by up to ~1.5x between runs; the side-by-side ratios are the figures to read.
"""


def write_section(table: str, title: str = "## Analysis speed", notes: str = NOTES,
                  cells: str = "Each cell: a fresh subprocess; seconds of work (after imports); peak RSS = that "
                               "process's VmHWM.") -> None:
    """Replace (or append) one section of RESULTS.md; other sections are left alone."""
    section = (f"{title}\n\nMachine: {machine()}. Command: `.venv/bin/python benchmarks/analysis_speed.py "
               f"{' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n"
               f"{cells}\nMB = uncompressed JSON.\n\n" + table + "\n" + notes)
    replace_section(title.removeprefix("## "), section)


if __name__ == "__main__":
    main()
