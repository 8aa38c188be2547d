"""Lay the run tarballs that HTCondor jobs send back into traces/<sweep>/<run>/.

Each job (condor/run.sh) returns one ``.tar.gz`` holding ``<sweep>/<run>/...``. Collecting
is all-or-nothing and safe to repeat: every tarball is read and checked before anything is
written; a run folder that is already there with an identical run.json (the same run) is
left alone; a different run under the same name is refused (one line, exit 2), never
overwritten. Tarballs are untrusted input on a shared submit node: member names are normalised
(``./seed/...`` is ``seed/...``) and checked (no absolute or ``..`` paths, no links, no sparse
members, no name that is both a file and a folder, no name the filesystem cannot hold), sizes are
capped (each member and the total, ``--max-bytes``), every run is unpacked into a hidden sibling
first and all are renamed into place only when every one succeeded. Torch-free: this runs on the
submit node.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from analysis.text.terminal import shown
from profiler.contract.runfiles import is_regular, open_regular
from profiler.contract.runjson import RUN_JSON_MAX_BYTES, RunJsonError, decode_run_json
from profiler.contract.vocab import RUN_JSON

WRAPPER_JSON = "condor_wrapper.json"   # written by condor/run.sh into every run folder
SUFFIXES = (".tar.gz", ".tgz")
MAX_BYTES = 4 << 30                    # default cap on one member and on everything one collect unpacks
NAME_MAX = 255                         # bytes in one path component (ext4, xfs, tmpfs ...)
PATH_MAX = 4000                        # bytes in the whole destination path, with room to spare
MTIME_MAX = 2**33                      # seconds (year 2242): a later or non-finite mtime is not applied



class CollectError(Exception):
    """Something the user must resolve; printed as one line, exit 2, nothing written."""


@dataclass
class RunInTar:
    """One <sweep>/<run>/ folder inside one tarball."""

    tarball: Path
    sweep: str
    run: str
    members: list[tuple[PurePosixPath, tarfile.TarInfo]] = field(default_factory=list)   # normalised name
    identity: bytes | None = None      # run.json bytes (or condor_wrapper.json when no run.json)
    status: str = "unknown"

    @property
    def size(self) -> int:
        return sum(info.size for _, info in self.members if info.isfile())

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
            raise CollectError(f"{shown(p)}: no such file or folder")
    return found


def _member_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo | None) -> bytes | None:
    if info is None or not info.isfile() or info.size > RUN_JSON_MAX_BYTES:
        return None
    f = tar.extractfile(info)
    return f.read(RUN_JSON_MAX_BYTES + 1) if f is not None else None


def _status(run_json: bytes | None, wrapper: bytes | None = None) -> str:
    if run_json is None:
        try:
            said = json.loads(wrapper).get("status") if wrapper else None
        except (ValueError, AttributeError, RecursionError):
            said = None
        return f"{said} (no run.json)" if isinstance(said, str) and said else "no run.json"
    try:
        info, _notes = decode_run_json(run_json)
    except RunJsonError:
        return "unreadable run.json"
    return info.status or "unknown"


def _normalised(path: Path, info: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's name without "./" parts (None for the archive's "." itself); CollectError if unsafe."""
    raw = info.name
    name = PurePosixPath(raw)
    if name.is_absolute() or ".." in name.parts or "\0" in raw:
        raise CollectError(f"{shown(path)}: unsafe member {shown(raw)!r}")
    return name if name.parts else None


def _check_member(path: Path, name: PurePosixPath, info: tarfile.TarInfo, max_bytes: int) -> None:
    if not (info.isfile() or info.isdir()):
        raise CollectError(f"{shown(path)}: member {shown(info.name)!r} is not a plain file or folder")
    if info.issparse():
        raise CollectError(f"{shown(path)}: member {shown(info.name)!r} is a sparse file (it would unpack to "
                           f"{info.size:,} bytes); refused")
    if info.size > max_bytes:
        raise CollectError(f"{shown(path)}: member {shown(info.name)!r} is {info.size:,} bytes, over the "
                           f"{max_bytes:,}-byte cap (--max-bytes)")
    for part in name.parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise CollectError(f"{shown(path)}: member {shown(info.name)[:80]!r}... has a name part longer than "
                               f"{NAME_MAX} bytes")


def read_tarball(path: Path, max_bytes: int = MAX_BYTES) -> list[RunInTar]:
    """The run folders in one tarball; refuses anything that is not <sweep>/<run>/<files>, or that
    could not be unpacked as it claims (see the module's docstring)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            runs: dict[tuple[str, str], RunInTar] = {}
            kinds: dict[PurePosixPath, bool] = {}        # normalised name -> is a folder
            for info in tar.getmembers():
                name = _normalised(path, info)
                if name is None:
                    continue
                _check_member(path, name, info, max_bytes)
                parts = name.parts
                if name in kinds:
                    if kinds[name] and info.isdir():
                        continue
                    raise CollectError(f"{shown(path)}: {shown(name)!r} appears twice")
                kinds[name] = info.isdir()
                if len(parts) < 2:
                    if info.isdir():
                        continue
                    raise CollectError(f"{shown(path)}: {shown(info.name)!r} is not inside <sweep>/<run>/")
                if len(parts) == 2 and not info.isdir():
                    raise CollectError(f"{shown(path)}: {shown(info.name)!r} is not inside <sweep>/<run>/")
                key = (parts[0], parts[1])
                runs.setdefault(key, RunInTar(path, *key)).members.append((name, info))
            for name, is_dir in kinds.items():          # a file must not also be a folder on the way to another
                for parent in name.parents:
                    if kinds.get(parent) is False:
                        raise CollectError(f"{shown(path)}: {shown(parent)!r} is both a file and a folder")
            for r in runs.values():
                by_name = dict(r.members)
                run_json = _member_bytes(tar, by_name.get(r.rel / RUN_JSON))
                wrapper = _member_bytes(tar, by_name.get(r.rel / WRAPPER_JSON))
                r.status = _status(run_json, wrapper)
                r.identity = run_json if run_json is not None else wrapper
            if not runs:
                raise CollectError(f"{shown(path)}: holds no <sweep>/<run>/ folder")
            return list(runs.values())
    except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError) as exc:
        raise CollectError(f"{shown(path)}: not a readable .tar.gz ({shown(exc)})") from None


def existing_identity(folder: Path) -> bytes | None:
    for name in (RUN_JSON, WRAPPER_JSON):
        if is_regular(folder / name):
            with open_regular(folder / name) as f:
                return f.read(RUN_JSON_MAX_BYTES + 1)
    return None


@dataclass
class Plan:
    new: list[RunInTar] = field(default_factory=list)
    already: list[RunInTar] = field(default_factory=list)


def plan(tarballs: Sequence[Path], into: Path, max_bytes: int = MAX_BYTES) -> Plan:
    """Decide, before writing anything, what each run folder will do."""
    out = Plan()
    claimed: dict[PurePosixPath, RunInTar] = {}
    total = 0
    for path in tarballs:
        for r in read_tarball(path, max_bytes):
            longest = max((len(str(into.resolve() / name).encode("utf-8", "surrogateescape"))
                           for name, _ in r.members), default=0)
            if longest > PATH_MAX:
                raise CollectError(f"{shown(path)}: a member of {shown(r.rel)} would need a path of {longest} bytes "
                                   f"under {shown(into)}")
            dest = into / r.sweep / r.run
            if r.rel in claimed:
                other = claimed[r.rel]
                if other.identity != r.identity or r.identity is None:
                    raise CollectError(f"{shown(r.tarball)} and {shown(other.tarball)} both hold {shown(r.rel)} but "
                                       f"different runs; collect one of them into another folder (--into)")
                continue
            claimed[r.rel] = r
            if dest.exists() or dest.is_symlink():
                have = existing_identity(dest)
                if have is not None and have == r.identity:
                    out.already.append(r)
                    continue
                raise CollectError(f"{shown(dest)} already holds a different run than {shown(r.tarball)}; refusing "
                                   f"to overwrite it (move it away, or collect into another folder with --into)")
            out.new.append(r)
            total += r.size
            if total > max_bytes:
                raise CollectError(f"the runs to collect hold more than {max_bytes:,} bytes (--max-bytes); "
                                   f"collect fewer tarballs at a time or raise the cap")
    return out


def unpack(r: RunInTar, into: Path) -> Path:
    """Unpack one run folder into a hidden temporary sibling of its destination; returns that folder."""
    dest = into / r.sweep / r.run
    tmp = Path(tempfile.mkdtemp(prefix=".collect-", dir=dest.parent))
    try:
        with tarfile.open(r.tarball, "r:gz") as tar:
            for name, info in r.members:
                target = tmp.joinpath(*name.parts[2:])
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(info)
                if src is None:
                    raise CollectError(f"{shown(r.tarball)}: member {shown(info.name)!r} cannot be read")
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if math.isfinite(info.mtime) and 0 <= info.mtime < MTIME_MAX:     # a pax mtime of nan or 1e300
                    os.utime(target, (info.mtime, info.mtime))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def extract_all(runs: Sequence[RunInTar], into: Path, progress: bool = False) -> list[Path]:
    """Every run unpacked beside its destination, then all renamed into place -- or, on any failure,
    nothing left: the temporaries removed, the renamed ones taken back, the folders made removed."""
    made: list[Path] = []
    unpacked: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for r in runs:
            parent = into / r.sweep
            for folder in reversed([parent, *parent.parents]):
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
        items: Sequence[RunInTar] = runs
        if progress and len(runs) > 1:
            from tqdm import tqdm
            items = tqdm(runs, desc="collect", unit="run")
        for r in items:
            unpacked.append((unpack(r, into), into / r.sweep / r.run))
        for tmp, dest in unpacked:
            os.rename(tmp, dest)
            placed.append(dest)
    except BaseException as exc:
        for dest in placed:
            shutil.rmtree(dest, ignore_errors=True)
        for tmp, _ in unpacked:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, (OSError, ValueError, OverflowError, tarfile.TarError, EOFError)):
            raise CollectError(f"unpacking failed, nothing was collected: {shown(exc)}") from None
        raise
    return placed


def collect(paths: Sequence[Path], into: Path, echo=print, max_bytes: int = MAX_BYTES) -> Plan:
    """Check every tarball, then unpack the new run folders (all or none); returns what was done."""
    tarballs = find_tarballs(paths)
    p = plan(tarballs, into, max_bytes)
    for r in p.already:
        echo(f"already there: {shown(into / r.sweep / r.run)} ({shown(r.status)})")
    extract_all(p.new, into, progress=sys.stderr.isatty())
    for r in p.new:
        echo(f"collected {shown(into / r.sweep / r.run)} ({shown(r.status)}) from {shown(r.tarball.name)}")
    return p


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):           # one line, like every other expected error here
        self.exit(2, f"collect: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m analysis.condor.collect",
        description="Unpack the run tarballs HTCondor jobs returned (condor/profile.sub puts them in "
                    "results/) into traces/<sweep>/<run>/, ready for `python -m analysis.report traces` "
                    "and `tensorboard --logdir traces`.",
        epilog="Repeating it is safe: runs already collected (identical run.json) are skipped. A different "
               "run under an existing name is refused (exit 2) and nothing is written.")
    p.add_argument("results", nargs="*", type=Path, default=[Path("results")],
                   help="folders holding .tar.gz files, or the files themselves (default: results)")
    p.add_argument("--into", type=Path, default=Path("traces"), help="traces root to fill (default: traces)")
    p.add_argument("--max-bytes", type=_size, default=MAX_BYTES, metavar="N",
                   help=f"refuse a member, or a collect, that would unpack more than N bytes "
                        f"(default {MAX_BYTES >> 30} GiB; suffixes K, M, G)")
    return p


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r}")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        p = collect(args.results, args.into, max_bytes=args.max_bytes)
    except CollectError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:          # e.g. the traces root itself cannot be made
        print(f"collect: {shown(exc)}; nothing was collected", file=sys.stderr)
        return 2
    if not p.new and not p.already:
        print(f"collect: no run tarballs in {', '.join(shown(r) for r in args.results)} yet")
    else:
        print(f"{len(p.new)} collected, {len(p.already)} already there, in {shown(args.into)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
