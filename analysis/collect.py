"""Lay the run tarballs that HTCondor jobs send back into traces/<sweep>/<run>/.

Each job (condor/run.sh) returns one ``.tar.gz`` holding ``<sweep>/<run>/...``. Collecting
is all-or-nothing and safe to repeat: every tarball is read and checked before anything is
written; a run folder that is already there with an identical run.json (the same run) is
left alone; a different run under the same name is refused (one line, exit 2), never
overwritten. Torch-free: this runs on the submit node.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from profiler.contract.runjson import RunJsonError, decode_run_json
from profiler.contract.vocab import RUN_JSON

WRAPPER_JSON = "condor_wrapper.json"   # written by condor/run.sh into every run folder
SUFFIXES = (".tar.gz", ".tgz")


class CollectError(Exception):
    """Something the user must resolve; printed as one line, exit 2, nothing written."""


@dataclass
class RunInTar:
    """One <sweep>/<run>/ folder inside one tarball."""

    tarball: Path
    sweep: str
    run: str
    members: list[tarfile.TarInfo] = field(default_factory=list)
    identity: bytes | None = None      # run.json bytes (or condor_wrapper.json when no run.json)
    status: str = "unknown"

    @property
    def rel(self) -> PurePosixPath:
        return PurePosixPath(self.sweep, self.run)


def find_tarballs(paths: Sequence[Path]) -> list[Path]:
    """Tarballs named on the command line, or found directly inside named folders."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.is_file() and q.name.endswith(SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise CollectError(f"{p}: no such file or folder")
    return found


def _member_bytes(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes | None:
    info = members.get(name)
    f = tar.extractfile(info) if info is not None and info.isfile() else None
    return f.read() if f is not None else None


def _status(run_json: bytes | None) -> str:
    if run_json is None:
        return "no run.json"
    try:
        info, _notes = decode_run_json(run_json)
    except RunJsonError:
        return "unreadable run.json"
    return info.status or "unknown"


def read_tarball(path: Path) -> list[RunInTar]:
    """The run folders in one tarball; refuses anything that is not <sweep>/<run>/<files>."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            infos = tar.getmembers()
            runs: dict[tuple[str, str], RunInTar] = {}
            for info in infos:
                name = PurePosixPath(info.name)
                parts = name.parts
                if name.is_absolute() or ".." in parts or not parts or parts[0] in (".", ""):
                    raise CollectError(f"{path}: unsafe member {info.name!r}")
                if not (info.isfile() or info.isdir()):
                    raise CollectError(f"{path}: member {info.name!r} is not a plain file or folder")
                if len(parts) < 2:
                    if info.isdir():
                        continue
                    raise CollectError(f"{path}: {info.name!r} is not inside <sweep>/<run>/")
                if len(parts) == 2 and not info.isdir():
                    raise CollectError(f"{path}: {info.name!r} is not inside <sweep>/<run>/")
                key = (parts[0], parts[1])
                runs.setdefault(key, RunInTar(path, *key)).members.append(info)
            by_name = {i.name.rstrip("/"): i for i in infos}
            for r in runs.values():
                run_json = _member_bytes(tar, by_name, str(r.rel / RUN_JSON))
                r.status = _status(run_json)
                r.identity = run_json if run_json is not None else \
                    _member_bytes(tar, by_name, str(r.rel / WRAPPER_JSON))
            if not runs:
                raise CollectError(f"{path}: holds no <sweep>/<run>/ folder")
            return list(runs.values())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CollectError(f"{path}: not a readable .tar.gz ({exc})") from None


def existing_identity(folder: Path) -> bytes | None:
    for name in (RUN_JSON, WRAPPER_JSON):
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    return None


@dataclass
class Plan:
    new: list[RunInTar] = field(default_factory=list)
    already: list[RunInTar] = field(default_factory=list)


def plan(tarballs: Sequence[Path], into: Path) -> Plan:
    """Decide, before writing anything, what each run folder will do."""
    out = Plan()
    claimed: dict[PurePosixPath, RunInTar] = {}
    for path in tarballs:
        for r in read_tarball(path):
            dest = into / r.sweep / r.run
            if r.rel in claimed:
                other = claimed[r.rel]
                if other.identity != r.identity or r.identity is None:
                    raise CollectError(f"{r.tarball} and {other.tarball} both hold {r.rel} but different runs; "
                                       f"collect one of them into another folder (--into)")
                continue
            claimed[r.rel] = r
            if dest.exists():
                have = existing_identity(dest)
                if have is not None and have == r.identity:
                    out.already.append(r)
                    continue
                raise CollectError(f"{dest} already holds a different run than {r.tarball}; refusing to "
                                   f"overwrite it (move it away, or collect into another folder with --into)")
            out.new.append(r)
    return out


def extract(r: RunInTar, into: Path) -> Path:
    """Unpack one run folder beside its destination, then rename it into place."""
    dest = into / r.sweep / r.run
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".collect-{r.run}-", dir=dest.parent))
    try:
        with tarfile.open(r.tarball, "r:gz") as tar:
            for info in r.members:
                target = tmp.joinpath(*PurePosixPath(info.name).parts[2:])
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(info)
                assert src is not None
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.utime(target, (info.mtime, info.mtime))
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def collect(paths: Sequence[Path], into: Path, echo=print) -> Plan:
    """Check every tarball, then unpack the new run folders; returns what was done."""
    tarballs = find_tarballs(paths)
    p = plan(tarballs, into)
    for r in p.already:
        echo(f"already there: {into / r.sweep / r.run} ({r.status})")
    items = p.new
    if len(items) > 1:
        from tqdm import tqdm
        items = tqdm(items, desc="collect", unit="run", disable=not sys.stderr.isatty())
    for r in items:
        dest = extract(r, into)
        echo(f"collected {dest} ({r.status}) from {r.tarball.name}")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.collect",
        description="Unpack the run tarballs HTCondor jobs returned (condor/profile.sub puts them in "
                    "results/) into traces/<sweep>/<run>/, ready for `python -m analysis.report traces` "
                    "and `tensorboard --logdir traces`.",
        epilog="Repeating it is safe: runs already collected (identical run.json) are skipped. A different "
               "run under an existing name is refused (exit 2) and nothing is written.")
    p.add_argument("results", nargs="*", type=Path, default=[Path("results")],
                   help="folders holding .tar.gz files, or the files themselves (default: results)")
    p.add_argument("--into", type=Path, default=Path("traces"), help="traces root to fill (default: traces)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        p = collect(args.results, args.into)
    except CollectError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    if not p.new and not p.already:
        print(f"collect: no run tarballs in {', '.join(map(str, args.results))} yet")
    else:
        print(f"{len(p.new)} collected, {len(p.already)} already there, in {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
