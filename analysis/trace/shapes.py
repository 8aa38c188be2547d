"""The batch a trace trained on, from the input shapes torch.profiler records with record_shapes=True.

Read only when a what-if needs a batch nobody stated: a second pass over the file that decodes the
name and the "Input Dims" of each event and nothing else, so the main reader stays as fast as it is.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Union

import msgspec

from analysis.trace.errors import TraceError
from analysis.trace.reader import read_bytes

__all__ = ["BATCH_OPS", "input_batch"]

# ops whose first input's first dimension is the batch: convolutions take [N, C, ...], linear [N, features]
BATCH_OPS = frozenset({"aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear"})


class _Args(msgspec.Struct, gc=False):
    dims: Any = msgspec.field(default=None, name="Input Dims")


class _Event(msgspec.Struct, gc=False):
    name: Union[str, None] = None
    args: Union[_Args, None] = None


class _Doc(msgspec.Struct, gc=False):
    traceEvents: list[_Event] = msgspec.field(default_factory=list)


_DECODER = msgspec.json.Decoder(_Doc)


def input_batch(path: Path) -> tuple[int, int] | None:
    """(batch, ops that agree): the most common first dimension of the first input of the model's
    conv / linear ops; None when the trace has no recorded shapes (record_shapes off) or is unreadable."""
    try:
        doc = _DECODER.decode(read_bytes(Path(path)))
    except (TraceError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    firsts: Counter[int] = Counter()
    for e in doc.traceEvents:
        if e.name in BATCH_OPS and e.args is not None and isinstance(e.args.dims, list) and e.args.dims:
            first = e.args.dims[0]
            if isinstance(first, list) and len(first) >= 2 and isinstance(first[0], int) and first[0] > 0:
                firsts[first[0]] += 1
    if not firsts:
        return None
    return firsts.most_common(1)[0]
