"""The attached command's process group: started apart, signalled whole, never left behind.

COMMAND runs in its own session (so its process group is its pid): a signal to attach goes to every
process of it -- a shell wrapper's grandchildren, DataLoader workers, ranks -- and before attach exits
the group is gone. A watchdog process (its own session, deaf to terminal signals) holds one end of a
pipe whose other end only attach holds: if attach dies, even by SIGKILL, the pipe closes and the
watchdog ends the group (SIGTERM, a grace for the traces to flush, then SIGKILL).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

__all__ = ["FORWARDED", "Signals", "Watchdog", "alive", "signal_group", "end_group"]

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WATCHDOG_GRACE_S = 3.0

_WATCHDOG = """
import os, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
line = sys.stdin.readline()
if not line.strip().isdigit():
    sys.exit(0)
pgid = int(line)
rest = sys.stdin.read()            # returns when attach closes the pipe: on exit, or when it dies
if "done" in rest:
    sys.exit(0)
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
if alive():
    os.killpg(pgid, signal.SIGTERM)
    end = time.monotonic() + float(sys.argv[1])
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


def _members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the group, from /proc (an orphaned zombie may never be reaped)."""
    out = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            out.append(pid)
    return out


def alive(pgid: int) -> bool:
    """Whether any process of the group still runs."""
    if os.path.isdir("/proc/self"):
        return bool(_members(pgid))
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(pgid: int, grace_s: float, signalled: bool = False) -> None:
    """Whatever is left of the group after its leader exited: SIGTERM (unless it had one already: a
    second one must not cut a flush short), `grace_s` to flush, SIGKILL."""
    if not alive(pgid):
        return
    if not signalled:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


class Watchdog:
    """Ends the command's group if attach dies without saying it is done."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.note: str | None = None

    def start(self) -> "Watchdog":
        """Start the watchdog; `self.note` says why not when it could not start (attach goes on without)."""
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(WATCHDOG_GRACE_S)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except OSError as exc:
            self.proc = None
            self.note = (f"attach: no watchdog ({exc.strerror or exc}): if attach is killed, the command's "
                         "processes may outlive it")
        return self

    def watch(self, pgid: int) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(f"{pgid}\n".encode())
                self.proc.stdin.flush()
            except OSError as exc:
                self.note = f"attach: the watchdog is gone ({exc.strerror or exc}): if attach is killed, " \
                            "the command's processes may outlive it"

    def done(self) -> None:
        """The group is gone (or was never started): the watchdog exits without touching anything."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write(b"\ndone\n")
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Signals:
    """SIGTERM / SIGINT / SIGHUP to attach: recorded (before the command starts: it never starts), then
    forwarded to the whole group as SIGTERM -- which every attached process turns into a flushed trace;
    the same signal again after a second kills the group."""

    def __init__(self) -> None:
        self.signum = 0
        self.at: float | None = None
        self.pgid: int | None = None

    def install(self) -> "Signals":
        for s in FORWARDED:
            signal.signal(s, self._handle)
        return self

    def forward(self) -> None:
        """Send the recorded signal on, now that the group exists."""
        if self.signum and self.pgid is not None:
            signal_group(self.pgid, signal.SIGTERM)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum:
            if signum == self.signum and self.pgid is not None and self.at is not None \
                    and time.monotonic() - self.at > 1.0:
                signal_group(self.pgid, signal.SIGKILL)
            return
        self.signum, self.at = signum, time.monotonic()
        self.forward()
