"""Text for a terminal: names from other people's files are shown, never obeyed.

A run folder or tarball member named with an escape sequence (ESC [ ... ) would otherwise recolour,
move the cursor in or retitle the user's terminal when printed.
"""
from __future__ import annotations

__all__ = ["shown", "shown_lines"]


def shown(text: object) -> str:
    """One line as a terminal should show it: every control character written as its escape (\\x1b, \\n)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def shown_lines(text: str) -> str:
    """Several lines: each line shown, the line breaks kept."""
    return "\n".join(shown(line) for line in text.split("\n"))
