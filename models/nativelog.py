"""Keep known-harmless native log lines (Kineto, CUPTI) off the terminal; show everything else.

On a machine without a GPU, Kineto writes lines such as
``ERROR:<date> <pid>:<tid> DeviceProperties.cpp:56] gpuGetDeviceCount failed with code 35``
and ``USDT:... profiler_start`` straight to fd 2, often in the middle of a tqdm bar (tqdm
redraws with ``\\r`` and never ends its line). A newcomer reads them as failures. The sweep
pipes each run's stderr through :class:`NativeLogFilter`: lines in the Kineto log format whose
message is in :data:`HARMLESS` go to a log file; every other byte -- including tqdm's
``\\r``-updated bars, passed on as soon as they arrive -- goes to the terminal unchanged.
"""
from __future__ import annotations

import re
from typing import TextIO

__all__ = ["HARMLESS", "KINETO_LINE", "NativeLogFilter", "is_harmless"]

# Kineto's glog-like format: LEVEL:YYYY-MM-DD HH:MM:SS pid:tid File.cpp:line] message
_LEVELS = ("INFO:", "WARNING:", "ERROR:", "USDT:", "STAGE:")
KINETO_LINE = re.compile(r"(?:INFO|WARNING|ERROR|USDT|STAGE):\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ "
                         r"[\w./-]+:\d+\] (?P<message>.*)")
_STAMP = re.compile(r"(?:INFO|WARNING|ERROR|USDT|STAGE):\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_STAMP_LEN = len("WARNING:2026-01-01 00:00:00")

# (message pattern, why it is harmless). A line must match both the Kineto format and one of these.
HARMLESS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"gpuGetDeviceCount failed with code \d+"),
     "Kineto probing for CUDA on a machine without a GPU/driver (code 35: no CUDA driver)"),
    (re.compile(r"profiler_(start|stop)\s*$"),
     "Kineto's USDT trace points announcing that the profiler started/stopped"),
    (re.compile(r"CUPTI (is )?not (available|initialized|supported)|libcupti.* not found", re.IGNORECASE),
     "CUPTI absent on a CPU-only machine: only CPU activities are recorded, as intended"),
)


def is_harmless(line: str) -> bool:
    """A whole Kineto-format line whose message is in :data:`HARMLESS`."""
    m = KINETO_LINE.fullmatch(line.rstrip("\r\n"))
    return m is not None and any(p.search(m.group("message")) for p, _why in HARMLESS)


def _candidate(text: str) -> int:
    """Where a Kineto line may begin in ``text`` (a level prefix, or one cut short at the end); -1 if nowhere."""
    best = -1
    for level in _LEVELS:
        i = text.find(level)
        if i >= 0 and (best < 0 or i < best):
            best = i
    tail_start = max(0, len(text) - max(map(len, _LEVELS)) + 1)
    for i in range(tail_start, len(text)):        # "...step/s]US" may be the start of "USDT:"
        if best >= 0 and i >= best:
            break
        if any(level.startswith(text[i:]) for level in _LEVELS):
            best = i
            break
    return best


class NativeLogFilter:
    """Feed it stderr text as it arrives; it writes to ``terminal`` and ``log`` without waiting
    for line ends except while a Kineto line is being assembled."""

    def __init__(self, terminal: TextIO, log: TextIO) -> None:
        self.terminal = terminal
        self.log = log
        self.diverted = 0          # harmless lines sent to the log
        self._pending = ""

    def feed(self, text: str) -> None:
        self._pending += text
        out: list[str] = []
        while self._pending:
            start = _candidate(self._pending)
            if start < 0:
                out.append(self._pending)
                self._pending = ""
                break
            if start > 0:                          # bar text before it: show now
                out.append(self._pending[:start])
                self._pending = self._pending[start:]
            head = self._pending
            if len(head) >= _STAMP_LEN and not _STAMP.match(head):
                # a level word but not Kineto's time stamp ("ERROR: ..." from Python): show it
                cut = next((i for i, ch in enumerate(head) if ch in "\r\n"), len(head) - 1) + 1
                out.append(head[:cut])
                self._pending = head[cut:]
                continue
            end = head.find("\n")
            if end < 0:
                break                              # wait for the rest of this line
            line, self._pending = head[:end + 1], head[end + 1:]
            nxt = _STAMP.search(line, 1)
            if nxt is not None:      # two processes' lines run together (DDP ranks): judge each alone
                line, self._pending = line[:nxt.start()], line[nxt.start():] + self._pending
            if is_harmless(line):
                self._flush(out)
                out = []
                self.log.write(line if line.endswith("\n") else line + "\n")
                self.log.flush()
                self.diverted += 1
            else:
                out.append(line)
        self._flush(out)

    def close(self) -> None:
        """End of stream: whatever is still pending is shown."""
        if self._pending:
            self._flush([self._pending])
            self._pending = ""

    def _flush(self, parts: list[str]) -> None:
        if parts:
            self.terminal.write("".join(parts))
            self.terminal.flush()
