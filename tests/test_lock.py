"""requirements/lock.txt is installed with --no-deps (scripts/install_lock.py), so it must be closed under
its own requirements: every pin's dependencies pinned too, at a version they accept."""
from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"

spec = importlib.util.spec_from_file_location("install_lock", ROOT / "scripts" / "install_lock.py")
install_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_lock)


def _pinned() -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in install_lock.pins(LOCK)}


def test_lock_is_installed_here():
    # The suite runs in the environment the lock makes; nothing of it is missing or at another version.
    assert install_lock.missing(install_lock.pins(LOCK)) == []
    assert len(_pinned()) >= 60


def test_lock_is_closed_under_requirements():
    pinned = _pinned()
    env = default_environment() | {"extra": ""}
    unmet = []
    for name, version in pinned.items():
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            have = pinned.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{name}=={version} needs {req} (lock: {have})")
    assert unmet == []


def test_large_wheels_go_one_at_a_time():
    heavy = {n for n in _pinned() if install_lock.HEAVY.match(n)}
    assert {"torch", "torchvision", "triton", "nvidia-cudnn-cu13", "nvidia-cublas"} <= heavy
    assert "nvidia-ml-py" not in heavy and "numpy" not in heavy
