"""Install requirements/lock.txt into the running interpreter's environment, keeping the disk peak low.

One `pip install -r lock` downloads every wheel before it installs any, so on a machine that takes torch
from PyPI (no local wheel store) the peak is the ~3.5 GB of CUDA wheels *plus* the ~6 GB they unpack
to — a CI machine with 8 GB free runs out. Here the small pins go in one call and each large one
(torch, triton, nvidia-*) in its own call with no pip cache, so the peak is the installed set plus
one wheel. The lock pins every dependency, so `--no-deps` installs exactly it; pins already installed
at their version are skipped (a changed lock installs only what changed).

Usage: python scripts/install_lock.py requirements/lock.txt
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HEAVY = re.compile(r"^(torch|torchvision|triton|nvidia-(?!ml-py).*|cuda-toolkit)$", re.I)
PIP = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]


def pins(lock: Path) -> list[tuple[str, str]]:
    """(name, version) for every `name==version` line; comments and blank lines ignored."""
    out = []
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"install_lock: {lock}: '{line}' is not an exact pin (name==version)")
        out.append((name.strip(), version.split(";", 1)[0].strip()))
    return out


def _normal(name: str) -> str:
    """PEP 503's name rule (packaging.utils.canonicalize_name): packaging is not installed yet when this runs."""
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(wanted: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pins not installed at exactly their version."""
    have = {_normal(d.metadata["Name"] or ""): d.version for d in metadata.distributions()}
    return [(n, v) for n, v in wanted if have.get(_normal(n)) != v]


def free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def run(args: list[str], what: str, where: Path) -> None:
    t0 = time.monotonic()
    rc = subprocess.call(PIP + args)
    if rc:
        raise SystemExit(f"install_lock: pip failed installing {what} (exit {rc}; "
                         f"{free_gb(where):.1f} GB free on {where})")
    print(f"  {what}: {time.monotonic() - t0:.0f} s, {free_gb(where):.1f} GB free", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    lock = Path(argv[0])
    where = Path(sys.prefix)
    wanted = pins(lock)
    todo = missing(wanted)
    if not todo:
        print(f"install_lock: all {len(wanted)} pins of {lock} already installed")
        return 0
    light = [f"{n}=={v}" for n, v in todo if not HEAVY.match(n)]
    heavy = [f"{n}=={v}" for n, v in todo if HEAVY.match(n)]
    print(f"install_lock: {len(todo)} pins to install into {where} "
          f"({len(light)} small in one call, {len(heavy)} large one at a time); "
          f"{free_gb(where):.1f} GB free", flush=True)
    if light:
        run(light, f"{len(light)} small packages", where)
    for i, req in enumerate(heavy, 1):
        run(["--no-cache-dir", req], f"[{i}/{len(heavy)}] {req}", where)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
