"""The files a run writes into its folder: what --overwrite may delete, and what marks a folder as a run."""
from __future__ import annotations

from pathlib import Path

from . import vocab

__all__ = ["RUN_FILE_PATTERNS", "clear_run_files", "is_run_folder"]

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
