"""benchmarks/RESULTS.md: each benchmark owns one "## <title>" section and replaces only that one."""
from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(title: str, section: str, path: Path = RESULTS) -> None:
    """Replace (or append) the "## <title>" section with `section` (which starts with that heading),
    keeping every other section as it is."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## " + re.escape(title) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    body = section.rstrip("\n") + "\n"
    new = (pattern.sub(lambda _m: body + "\n", old, count=1) if pattern.search(old)
           else old.rstrip("\n") + "\n\n" + body)
    path.write_text(new.rstrip("\n") + "\n")
