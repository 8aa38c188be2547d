"""Numbers in the units a reader expects, at the precision that matters: every sentence of the report
(phrasing) and every table (the view) writes bytes, milliseconds, shares and CPUs the same way."""
from __future__ import annotations

__all__ = ["pct", "gb", "ms", "cpus"]


def pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def gb(n: float) -> str:
    """Bytes to the unit that shows them: 4.99 GB, 40.0 MB, 2.6 kB."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def ms(x: float) -> str:
    """Milliseconds to the precision that matters: 6707, 86.4, 2.15."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}"


def cpus(n: float) -> str:
    """'1 CPU', '4 CPUs', '2.5 CPUs' (a cgroup quota may be fractional)."""
    return f"{n:g} CPU" + ("" if n == 1 else "s")
