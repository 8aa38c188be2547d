"""Which PyTorch Profiler TensorBoard plugin is installed, and what not to trust in it.

torch-tb-profiler 0.4.3 is the last release (the plugin was removed upstream in 2026).
On torch 2.x traces its Overview misreports; the report shows this note so nobody reads
its numbers as ours. Torch-free: looks only at installed package metadata.
"""
from __future__ import annotations

import re
from importlib import metadata

DISTRIBUTION = "torch-tb-profiler"
KNOWN_LIMITED = (0, 4, 3)   # this release and older: the limits below apply

LIMITED_NOTE = (
    "TensorBoard's PyTorch Profiler tab is torch-tb-profiler {version} (unmaintained, removed "
    "upstream): use it for its Trace and Operator views only. On torch 2.x traces its Overview "
    "shows DataLoader 0 % (it drops user_annotation events) and it has no notion of DataParallel "
    "(scatter/replicate/gather are not separated); its page waits for Google Charts from a CDN, "
    "so in a browser without internet every view spins forever. scalescope's own breakdown, per-device "
    "view, findings and what-if are in the scalescope tab (served by TensorBoard, offline), and as series "
    "in the Scalars tab (the breakdown/ and device_busy_pct/ tags) and the Text tab — see docs/tensorboard.md."
)
def installed_version() -> str | None:
    """Version string of the installed torch-tb-profiler, or None when it is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: "0.4.3" -> (0, 4, 3), "0.5.0rc1" -> (0, 5, 0)."""
    match = re.match(r"(\d+(?:\.\d+)*)", version.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def plugin_note() -> str | None:
    """The warning for the installed torch-tb-profiler (what the report shows); None when it is not
    installed (TensorBoard then has no PyTorch Profiler tab to distrust) or is newer than we checked."""
    version = installed_version()
    return note_for_version(version) if version is not None else None


def note_for_version(version: str) -> str | None:
    """LIMITED_NOTE for 0.4.3 and older, else None: we have not checked a newer release's behaviour,
    so we claim nothing about it."""
    release = _release(version)
    if release and release <= KNOWN_LIMITED:
        return LIMITED_NOTE.format(version=version)
    return None
