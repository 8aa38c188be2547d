"""The files a run writes into its folder: what --overwrite may delete, and what marks a folder as a run."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from . import vocab

__all__ = ["RUN_FILE_PATTERNS", "clear_run_files", "is_run_folder", "NotRegularFile", "open_regular", "is_regular"]


class NotRegularFile(OSError):
    """A path named like a run file that is a FIFO, socket, device or directory: never read (a FIFO
    would block the reader forever). `strerror` says what it is."""

    def __init__(self, path: Path | str, what: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file: {what}", str(path))


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a file")


def open_regular(path: Path | str, buffering: int = -1) -> BinaryIO:
    """Open a regular file for reading (symbolic links followed), without ever blocking on a FIFO:
    opened non-blocking, checked by fstat on that very descriptor, then made blocking again.
    OSError for anything else -- NotRegularFile, a broken link (ENOENT), a link loop (ELOOP)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, _kind(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def is_regular(path: Path | str) -> bool:
    """A regular file (links followed); False for FIFOs, sockets, devices, broken links, loops."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False

RUN_FILE_PATTERNS = (*(f"*{s}" for s in vocab.TRACE_SUFFIXES), vocab.SAMPLES_CSV, vocab.RUN_JSON,
                     f".{vocab.RUN_JSON}.*.tmp",      # a killed write_json_atomic's temp file
                     f".{vocab.RUN_JSON}.reserve",    # a killed attach's reserved space
                     "events.out.tfevents.*")


def clear_run_files(run_dir: Path) -> list[str]:
    """--overwrite: delete only files a run writes; return what else is left (never deleted)."""
    for pattern in RUN_FILE_PATTERNS:
        for f in run_dir.glob(pattern):
            if f.is_file():
                f.unlink()
    return sorted(p.name for p in run_dir.iterdir())


def is_run_folder(run_dir: Path) -> bool:
    """A folder that already holds a run (its run.json or a trace): writing into it needs --overwrite."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and ((run_dir / vocab.RUN_JSON).exists()
                                 or any(next(run_dir.glob(f"*{s}"), None) is not None for s in vocab.TRACE_SUFFIXES))
