"""The attached run's folder: checked and made at the start (and unmade when the start fails), a
reserve that keeps room for the final run.json, run.json finished even on a full disk, and the
folder renamed `<name>-<N><gpu|cpu>` once the processes showed what they trained on."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..contract import vocab
from ..contract.runfiles import clear_run_files, is_run_folder
from ..contract.runname import format_attached_name
from ..runinfo import RunRecord
from .args import UsageError

__all__ = ["RESERVE", "check_out", "made_folders", "undo_start", "reserve", "release", "finish", "rename"]


RESERVE = ".run.json.reserve"      # space held at start so that the final run.json fits on a disk that filled
RESERVE_BYTES = 1 << 20


def check_out(out: Path, run_dir: Path) -> None:
    """--out and the run folder are folders, or can become ones (else UsageError)."""
    for path in (out, run_dir):
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is not a folder" + (" (--out names a file)" if path == out else ""))
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a folder")


def made_folders(run_dir: Path) -> list[Path]:
    """The folders mkdir(parents=True) will create, deepest first (removed again on a failed start)."""
    made = []
    path = run_dir
    while not path.exists() and path != path.parent:
        made.append(path)
        path = path.parent
    return made


def undo_start(run_dir: Path, made: list[Path]) -> None:
    """A start that failed leaves nothing: our run.json (and its temp files), the folders we made."""
    for pattern in (vocab.RUN_JSON, vocab.SAMPLES_CSV, f".{vocab.RUN_JSON}.*.tmp", RESERVE):
        for f in run_dir.glob(pattern):
            try:
                f.unlink()
            except OSError:
                pass
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break


def reserve(run_dir: Path) -> None:
    """Hold RESERVE_BYTES in the run folder until run.json is final (see `finish`)."""
    with open(run_dir / RESERVE, "wb") as f:
        f.write(bytes(RESERVE_BYTES))
        f.flush()
        os.fsync(f.fileno())


def release(run_dir: Path) -> None:
    try:
        (run_dir / RESERVE).unlink()
    except OSError:
        pass


def finish(record: RunRecord, status: str, message: str | None, results: Any, notes: list[str]) -> bool:
    """record.finish; on a full disk, the reserve is given back and run.json written failed; one line
    when even that fails (the command's code is still returned)."""
    try:
        record.finish(status, message, results, notes)
        return True
    except OSError as exc:
        why = exc.strerror or str(exc)
    release(record.run_dir)
    if status != vocab.STATUS_FAILED:
        record.info.status = vocab.STATUS_FAILED
        record.info.message = f"the run folder's disk filled: run.json could not be rewritten ({why})"
    try:
        record.write()
        return True
    except OSError as exc:
        print(f"error: could not write {record.path}: {exc.strerror or exc} (run status: {record.info.status}"
              f"{', ' + record.info.message if record.info.message else ''})", file=sys.stderr)
        return False


def rename(record: RunRecord, args: argparse.Namespace, out: Path, name: str, config: dict[str, object]) -> Path:
    run_dir = record.run_dir
    if args.name:
        return run_dir
    target = out / format_attached_name(name, config.get("devices"), config.get("device_type"))
    if target == run_dir:
        return run_dir
    try:
        if is_run_folder(target) and args.overwrite:
            clear_run_files(target)
        if target.exists() and any(target.iterdir()):
            print(f"note: {target} exists; this run stays in {run_dir} (--overwrite replaces it)", file=sys.stderr)
            return run_dir
        if target.exists():
            target.rmdir()
        run_dir.rename(target)
    except OSError as exc:
        print(f"note: could not rename {run_dir} to {target.name}: {exc.strerror or exc}", file=sys.stderr)
        return run_dir
    record.run_dir, record.path = target, target / vocab.RUN_JSON
    record.info.name = target.name
    try:
        record.write()
    except OSError as exc:
        print(f"error: could not write {record.path}: {exc.strerror or exc}", file=sys.stderr)
    return target
