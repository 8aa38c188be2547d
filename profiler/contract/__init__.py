"""The traces/<run>/ contract as torch-free code: the one module writers and readers share.

`vocab` (names: phases, categories, strategies, samples.csv metrics, statuses), `runname`
(format and parse run folder names), `runjson` (run.json as msgspec Structs, schema 2,
schema 1 still read), `samples` (the one samples.csv reader), `allreduce` (the bytes a ring
all-reduce moves). Imports nothing heavy.
"""
from . import allreduce, runjson, runname, samples, vocab

__all__ = ["vocab", "runname", "runjson", "samples", "allreduce"]
