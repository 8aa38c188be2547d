"""HTCondor "old ClassAd" files (``Key = Value`` per line, as $_CONDOR_JOB_AD / $_CONDOR_MACHINE_AD).

Its own module because two writers read them: run.json's environment (the ad fields worth
keeping) and the CPU allocation (the slot's ``Cpus``). Torch-free, stdlib only.
"""
from __future__ import annotations

from typing import Any

__all__ = ["parse_classad", "classad_value"]


def classad_value(text: str) -> Any:
    """A ClassAd literal as Python: "strings", integers, reals, true/false, undefined;
    anything else (an expression) is kept as its source text."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return t[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("undefined", "error"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_classad(text: str, keep: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Parse an old-ClassAd text.

    ``keep`` selects attributes case-insensitively (spelled as in ``keep``);
    None keeps all. Lines that are not ``Key = Value`` are ignored.
    """
    wanted = {k.lower(): k for k in keep} if keep is not None else None
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").replace(".", "").isalnum():
            continue
        if wanted is not None:
            if key.lower() not in wanted:
                continue
            key = wanted[key.lower()]
        out[key] = classad_value(value)
    return out
